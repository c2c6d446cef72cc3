"""The HTTP front: Klein routes mapping URLs to the parts, and the Site that serves them."""
