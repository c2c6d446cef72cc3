#!/bin/sh
# Regenerate xrelay/demo/sample.ts, the clip the demo provider loops for
# live channels, HLS segments, VOD files and catch-up answers.
#
# 5 s of 640x360 test pattern with a burnt-in label and timecode, a 1 kHz
# sine tone, H.264 main profile with a keyframe every second (25 frames,
# no scene-cut keyframes), AAC, MPEG-TS at about 1 Mbit/s.  The mpegts
# muxer repeats PAT/PMT before every keyframe and sets the adaptation
# field's random-access indicator on keyframes; +initial_discontinuity
# marks the first packet of each PID; -pes_payload_size 0 puts each audio
# frame in its own PES, so the loop period can be read from the timestamps.
#
# Usage: tools/make_sample_ts.sh [OUTPUT]   (default xrelay/demo/sample.ts)
set -eu
out="${1:-$(dirname "$0")/../xrelay/demo/sample.ts}"
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf

video="testsrc2=size=640x360:rate=25:duration=5"
if [ -r "$font" ] && ffmpeg -hide_banner -filters 2>/dev/null | grep -q ' drawtext '; then
    label="drawtext=fontfile=$font:text='xrelay demo':x=20:y=20:fontsize=36:fontcolor=white:box=1:boxcolor=black@0.6"
    clock="drawtext=fontfile=$font:text='%{pts\\:hms}':x=20:y=h-60:fontsize=32:fontcolor=yellow:box=1:boxcolor=black@0.6"
    video="$video,$label,$clock"
fi

ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "$video" \
    -f lavfi -i "sine=frequency=1000:sample_rate=48000:duration=5" \
    -map 0:v -map 1:a \
    -c:v libx264 -profile:v main -level 3.0 -pix_fmt yuv420p -preset medium \
    -g 25 -keyint_min 25 -sc_threshold 0 -bf 0 \
    -b:v 850k -maxrate 900k -bufsize 900k \
    -x264-params "nal-hrd=none" \
    -c:a aac -b:a 64k -ac 2 \
    -f mpegts -mpegts_flags +resend_headers+initial_discontinuity -pes_payload_size 0 \
    -mpegts_service_id 1 -metadata service_provider=xrelay -metadata service_name="xrelay demo" \
    "$out"
# Fail loudly if the result does not decode cleanly.
ffmpeg -hide_banner -loglevel error -xerror -i "$out" -f null -
ffprobe -hide_banner -loglevel error -show_entries stream=codec_name,profile,width,height \
    -show_entries format=duration,size,bit_rate -of compact=p=0 "$out"
