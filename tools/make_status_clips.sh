#!/bin/sh
# Regenerate the status clips xrelay plays to a player instead of a bare
# refusal: xrelay/relay/clips/{busy,unavailable,expired}.ts.
#
# Run once when the clips change and commit the result: xrelay needs no
# ffmpeg at run time.  Each clip is 4.8 s (120 frames at 25 fps, exactly 225
# AAC frames at 48 kHz, so video and audio end together and the loop has no
# gap), 1280x720, a still card with one line of text: H.264 main profile, a
# keyframe every 2 s and no B-frames, silent mono AAC.  The mpegts muxer
# starts with PAT/PMT, sets the random-access indicator on keyframes and
# (+initial_discontinuity) gives the first packet of every PID an adaptation
# field with the discontinuity indicator, which xrelay repeats at each loop.
#
# Usage: tools/make_status_clips.sh [OUTPUT_DIR]   (default xrelay/relay/clips)
set -eu
out="${1:-$(dirname "$0")/../xrelay/relay/clips}"
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
small=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
[ -r "$font" ] && [ -r "$small" ] || { echo "needs fonts-dejavu-core" >&2; exit 1; }
mkdir -p "$out"

make_clip() {
    name=$1 text=$2 hint=$3
    card="color=c=0x1c2630:size=1280x720:rate=25:duration=4.8"
    line1="drawtext=fontfile=$font:text='$text':fontsize=64:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2-30"
    line2="drawtext=fontfile=$small:text='$hint':fontsize=32:fontcolor=0xb0bec5:x=(w-text_w)/2:y=(h/2)+50"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "$card,$line1,$line2,format=yuv420p" \
        -f lavfi -i "anullsrc=channel_layout=mono:sample_rate=48000" \
        -map 0:v -map 1:a -t 4.8 \
        -c:v libx264 -profile:v main -level 3.1 -preset veryslow -tune stillimage \
        -g 50 -keyint_min 50 -sc_threshold 0 -bf 0 -crf 28 -maxrate 400k -bufsize 800k \
        -x264-params "nal-hrd=none" \
        -c:a aac -b:a 24k -ac 1 \
        -f mpegts -mpegts_flags +initial_discontinuity \
        -mpegts_service_id 1 -metadata service_provider=xrelay -metadata service_name="xrelay" \
        "$out/$name.ts"
    # Fail loudly if the result does not decode cleanly.
    ffmpeg -hide_banner -loglevel error -xerror -i "$out/$name.ts" -f null -
    printf '%s: ' "$name"
    ffprobe -hide_banner -loglevel error -show_entries format=duration,size,bit_rate \
        -of compact=p=0 "$out/$name.ts"
}

make_clip busy "All connections are in use" "Stop another stream, then try again"
make_clip unavailable "Channel unavailable" "The provider did not deliver this channel"
make_clip expired "Account expired" "Ask the administrator to renew it"
