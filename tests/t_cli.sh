# SPDX-License-Identifier: GPL-2.0
# Every subcommand of the blksnap CLI: its success path and main errors, with
# their output (upstream's, byte for byte) and exit status (0; 1 with the
# errno named for a failure, and for bad usage), --json (-j) where it reports
# something, --help, and the manual pages. markdirtyblock -f marks the
# blocks of a file on ext4. backup, verify and restore are t_backup.sh's:
# here only their --help.
# The helpers set variables by name (printf -v), which shellcheck cannot see.
# shellcheck disable=SC2154
. tests/lib.sh
. tests/snap_lib.sh

subcommands=(version attach detach cbtinfo readcbtmap markdirtyblock
	snapshot_create snapshot_add snapshot_take snapshot_destroy
	snapshot_collect snapshot_info snapshot_waitevent snapshot_watcher
	backup verify restore)

ok() {
	echo "ok: $*"
}

# expect_status STATUS REGEX COMMAND...: COMMAND must exit with STATUS and
# print (on stdout or stderr) a line matching the extended REGEX.
expect_status() {
	local want=$1 re=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" != "$want" ] || ! grep -qE -- "$re" <<<"$out"; then
		echo "$out"
		fail "'$*' exited $rc, expected $want and /$re/"
	fi
	ok "$(basename "$1") ${*:2} -> $rc: $(grep -m 1 -E -- "$re" <<<"$out")"
}

# run_ok VAR COMMAND...: COMMAND must succeed; VAR gets its stdout.
run_ok() {
	local __var=$1 __out
	shift
	if ! __out=$("$@" 2>"$w/stderr"); then
		cat "$w/stderr"
		fail "'$*' failed"
	fi
	printf -v "$__var" %s "$__out"
}

# json_line JSON KEY...: the values of the KEYs of a JSON object, joined by
# "|" (a list as its items joined by ",").
json_line() {
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print("|".join(",".join(v) if isinstance(v, list) else str(v) for v in (d[k] for k in sys.argv[2:])))
' "$@"
}

# table_specs MAP: BLOCK=VALUE for each marked block of a saved CBT table,
# as cbt_expect takes them.
table_specs() {
	od -An -v -tu1 -w1 "$1" | awk '$1 != 0 { print NR - 1 "=" $1 }'
}

# file_blocks FILE BLOCK_SIZE: the CBT blocks holding FILE, from filefrag
# (whose -b512 gives 512-byte units).
file_blocks() {
	filefrag -s -v -b512 "$1" | awk -F: -v bs="$2" '/^ *[0-9]+: / {
		split($3, p, /\.\./)
		for (b = int(p[1] * 512 / bs); b <= int(p[2] * 512 / bs); b++) print b
	}' | sort -un
}

snap_workdir w

step "help, usage errors and manual pages"
listed=$("$BLKSNAP" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF && $1 != "help" { print $1 }')
[ "$listed" = "$(printf '%s\n' "${subcommands[@]}")" ] || fail "--help lists: $listed"
ok "--help lists the ${#subcommands[@]} subcommands"
for c in "${subcommands[@]}"; do
	expect_status 0 "^Usage: blksnap $c " "$BLKSNAP" "$c" --help
done
expect_status 1 "unrecognized subcommand" "$BLKSNAP" no_such_command
expect_status 1 "required arguments were not provided" "$BLKSNAP" attach
expect_status 1 "required arguments were not provided" "$BLKSNAP" markdirtyblock -d /dev/null
expect_status 1 "cannot be used with" "$BLKSNAP" markdirtyblock -d /dev/null -r 0:8 -f "$w/file"
expect_status 1 "expected SECTOR:COUNT" "$BLKSNAP" markdirtyblock -d /dev/null -r 8
expect_status 1 "expected a UUID" "$BLKSNAP" snapshot_take -i 1234
expect_status 1 "multiple of 512" "$BLKSNAP" snapshot_create -f "$w/diff" -l 1000
expect_status 1 "required arguments were not provided" "$BLKSNAP" snapshot_waitevent \
	-i 00000000-0000-0000-0000-000000000000

"$BLKSNAP" man "$w/man" || fail "man"
# backup's own subcommands have pages too.
nested=(blksnap-backup-list blksnap-backup-prune)
pages=("$w"/man/*)
[ ${#pages[@]} = $((${#subcommands[@]} + 1 + ${#nested[@]})) ] || fail "manual pages: ${pages[*]}"
for p in blksnap "${subcommands[@]/#/blksnap-}" "${nested[@]}"; do
	f=$w/man/$p.1
	if [ ! -s "$f" ] || ! head -n 1 "$f" | grep -qE '^\.(TH|ie) '; then
		fail "$f is no manual page"
	fi
done
ok "man wrote blksnap.1 and a page per subcommand, backup list and prune included"
if command -v man >/dev/null && command -v nroff >/dev/null; then
	# Without man-db's seccomp sandbox, which the test kernel may not have.
	out=$(MAN_DISABLE_SECCOMP=1 MANWIDTH=80 man -l -P cat "$w/man/blksnap-markdirtyblock.1") ||
		fail "man -l"
	grep -q -- "--file" <<<"$out" || fail "man -l: $out"
	ok "man -l renders blksnap-markdirtyblock.1"
fi
expect_status 1 "cannot write the manual pages" "$BLKSNAP" man /proc/no/such/dir

if [ ! -e /dev/blksnap-control ]; then
	expect_status 1 "\(ENOENT\); is the blksnap module loaded" "$BLKSNAP" version
fi

load_module diff_storage_minimum=16384
on_exit snap_destroy_all

step "version"
run_ok v "$BLKSNAP" version
grep -qxE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' <<<"$v" || fail "version: '$v'"
run_ok j "$BLKSNAP" version -j
[ "$(json_line "$j" major minor revision build | tr '|' .)" = "$v" ] ||
	fail "version --json: $j, version: $v"
ok "version $v, --json $j"

snap_loop dev 64M # 1024 blocks of 64 KiB
snap_loop other 16M

step "a device without the filter"
expect_status 1 "ENOENT" "$BLKSNAP" cbtinfo -d "$other"
expect_status 1 "ENOENT" "$BLKSNAP" readcbtmap -d "$other" -f "$w/map"
[ ! -e "$w/map" ] || fail "readcbtmap wrote a table of no device"
expect_status 1 "ENOENT" "$BLKSNAP" markdirtyblock -d "$other" -r 0:8
expect_status 1 "ENOENT" "$BLKSNAP" snapshot_info -d "$other"
expect_status 1 "ENOENT" "$BLKSNAP" detach -d "$other"
expect_status 1 "cannot open /dev/no-such-disk: .*ENOENT" "$BLKSNAP" attach -d /dev/no-such-disk

step "attach and detach"
run_ok out "$BLKSNAP" attach -d "$other"
on_exit "$BLKSNAP" detach -d "$other"
[ "$(filter_of "$other")" = blksnap ] || fail "attach: no filter"
[ "$out" = "Attached successfully" ] || fail "attach printed '$out'"
ok "attach -d $other: $out"
run_ok out "$BLKSNAP" attach -d "$other"
[ "$out" = "Already was attached" ] || fail "attach again printed '$out'"
ok "attach again: $out, exit 0"
run_ok out "$BLKSNAP" snapshot_info -d "$other"
[ "$out" = "$(printf 'error_code=0\nimage=/dev/')" ] || fail "snapshot_info in no snapshot: $out"
ok "snapshot_info of a device in no snapshot: no error, image=/dev/"
run_ok out "$BLKSNAP" detach -d "$other"
[ -z "$(filter_of "$other")" ] || fail "detach: filter still there"
ok "detach -d $other"
expect_status 1 "ENOENT" "$BLKSNAP" detach -d "$other"

step "ext4 with a file, then the filter"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || fail "mkfs"
mkdir "$w/m"
mount "$dev" "$w/m" || fail "mount"
on_exit umount "$w/m"
size=$((1048576 + 1000))
head -c $size /dev/urandom >"$w/m/file" || fail "write the file"
: >"$w/m/empty"
sync
expect_status 1 "ENOENT" "$BLKSNAP" markdirtyblock -d "$dev" -f "$w/m/file"
expect_status 1 "is not on $other: its file system is on device" \
	"$BLKSNAP" markdirtyblock -d "$other" -f "$w/m/file"
: >"$w/tmpfs-file"
expect_status 1 "is not on $dev" "$BLKSNAP" markdirtyblock -d "$dev" -f "$w/tmpfs-file"
expect_status 1 "not a regular file" "$BLKSNAP" markdirtyblock -d "$dev" -f "$w/m"
expect_status 1 "cannot open $w/m/none: .*ENOENT" "$BLKSNAP" markdirtyblock -d "$dev" -f "$w/m/none"
run_ok out "$BLKSNAP" attach -d "$dev"
on_exit "$BLKSNAP" detach -d "$dev"
ok "attach -d $dev"

step "cbtinfo and readcbtmap"
run_ok info "$BLKSNAP" cbtinfo -d "$dev"
echo "$info"
[ "$(cut -d= -f1 <<<"$info" | paste -sd ' ')" = \
	"block_size device_capacity block_count generation_id changes_number" ] ||
	fail "cbtinfo: not upstream's fields in upstream's order"
for want in block_size=65536 device_capacity=$((64 << 20)) block_count=1024 changes_number=0; do
	grep -qx "$want" <<<"$info" || fail "cbtinfo: no $want"
done
grep -qxE "generation_id=$SNAP_ID_RE" <<<"$info" || fail "cbtinfo: generation_id is no UUID"
run_ok j "$BLKSNAP" cbtinfo --json -d "$dev"
[ "$(json_line "$j" block_size device_capacity block_count generation_id changes_number)" = \
	"$(cut -d= -f2 <<<"$info" | tr -d - | paste -sd '|')" ] || fail "cbtinfo --json: $j"
ok "cbtinfo, and --json: $j"
run_ok out "$BLKSNAP" readcbtmap -d "$dev" -f "$w/map"
[ "$(stat -c %s "$w/map")" = 1024 ] || fail "readcbtmap: $(stat -c %s "$w/map") bytes"
cmp -s "$w/map" <(head -c 1024 /dev/zero) || fail "readcbtmap: not zero before a take"
ok "readcbtmap: 1024 bytes, zero"
expect_status 1 "cannot write $w/no/map" "$BLKSNAP" readcbtmap -d "$dev" -f "$w/no/map"

step "snapshot errors"
unknown=$(cat /proc/sys/kernel/random/uuid)
expect_status 1 "cannot create a snapshot on $w/no/diff: .*ENOENT" \
	"$BLKSNAP" snapshot_create -f "$w/no/diff" -l 64M -d "$dev"
: >"$w/diff"
expect_status 1 "cannot open /dev/no-such-disk: .*ENOENT" \
	"$BLKSNAP" snapshot_create -f "$w/diff" -l 64M -d /dev/no-such-disk
# As upstream, the id comes first, then the devices are added.
"$BLKSNAP" snapshot_create -f "$w/diff" -l 64M -d /dev/no-such-disk >"$w/out" 2>/dev/null &&
	fail "snapshot_create with a missing device succeeded"
grep -qxE "$SNAP_ID_RE" "$w/out" || fail "snapshot_create did not print the id first: $(cat "$w/out")"
[ "$(snap_count)" = 0 ] || fail "a failed snapshot_create left a snapshot"
ok "failed snapshot_create left no snapshot"
expect_status 1 "no such snapshot \(ESRCH\)" "$BLKSNAP" snapshot_add -i "$unknown" -d "$dev"
expect_status 1 "no such snapshot \(ESRCH\)" "$BLKSNAP" snapshot_take -i "$unknown"
expect_status 1 "no such snapshot \(ENODEV\)" "$BLKSNAP" snapshot_destroy -i "$unknown"
run_ok out "$BLKSNAP" snapshot_waitevent -i "$unknown" -t 100
[ "$out" = "result=not found" ] || fail "snapshot_waitevent of an unknown id: $out"
ok "snapshot_waitevent of an unknown id: $out"
"$BLKSNAP" snapshot_collect >"$w/collect" || fail "snapshot_collect"
[ "$(od -An -c "$w/collect" | tr -d ' ')" = '\n' ] || fail "snapshot_collect with no snapshot: $(cat "$w/collect")"
ok "snapshot_collect: none"

step "a snapshot, created empty and added to"
snap_create id "$w/diff" 64M
run_ok out "$BLKSNAP" snapshot_add -i "$id" -d "$dev"
SNAP_DEVS[$id]=$dev # for snap_take and snap_destroy to wait for its image
ok "snapshot_add -i $id -d $dev"
expect_status 1 "EALREADY" "$BLKSNAP" snapshot_add -i "$id" -d "$dev"
"$BLKSNAP" snapshot_collect >"$w/collect" || fail "snapshot_collect"
cmp -s "$w/collect" <(printf '%s \n\n' "$id") || fail "snapshot_collect: '$(cat "$w/collect")', not '$id '"
run_ok j "$BLKSNAP" snapshot_collect --json
[ "$(json_line "$j" ids)" = "$id" ] || fail "snapshot_collect --json: $j"
ok "snapshot_collect lists $id, --json: $j"
run_ok out "$BLKSNAP" snapshot_info -d "$dev"
[ "$out" = "$(printf 'error_code=0\nimage=/dev/')" ] || fail "snapshot_info before the take: $out"
run_ok j "$BLKSNAP" --json snapshot_info -d "$dev"
[ "$(json_line "$j" error_code image)" = "0|" ] || fail "snapshot_info --json before the take: $j"
ok "snapshot_info before the take: no image, --json: $j"
run_ok out "$BLKSNAP" snapshot_waitevent -i "$id" -t 100
[ "$out" = "result=timeout" ] || fail "snapshot_waitevent: $out"
ok "snapshot_waitevent without an event: $out"
snap_take "$id"
ok "snapshot_take -i $id"
img=$(image_of "$dev")
run_ok out "$BLKSNAP" snapshot_info -d "$dev"
[ "$out" = "$(printf 'error_code=0\nimage=%s' "$img")" ] || fail "snapshot_info: $out"
run_ok out "$BLKSNAP" snapshot_info -d "$dev" --field image
[ "$out" = "$img" ] || fail "snapshot_info --field image: $out"
run_ok out "$BLKSNAP" snapshot_info -d "$dev" -f error_code
[ "$out" = 0 ] || fail "snapshot_info -f error_code: $out"
[ -b "$img" ] || fail "$img is no block device"
run_ok j "$BLKSNAP" snapshot_info --json -d "$dev"
[ "$(json_line "$j" error_code image)" = "0|$img" ] || fail "snapshot_info --json: $j"
ok "snapshot_info: image $img, --json: $j"
expect_status 1 "EALREADY" "$BLKSNAP" snapshot_take -i "$id"
snap_destroy "$id"
ok "snapshot_destroy -i $id"
run_ok out "$BLKSNAP" snapshot_collect
[ -z "$out" ] || fail "snapshot_collect after the destroy: $out"
ok "snapshot_collect: none after the destroy"
expect_status 1 "no such snapshot \(ENODEV\)" "$BLKSNAP" snapshot_destroy -i "$id"

step "markdirtyblock -r and -f"
# The take made the read table; only CBTDIRTY changes it until the next.
run_ok out "$BLKSNAP" readcbtmap -d "$dev" -f "$w/map0"
mapfile -t before < <(table_specs "$w/map0")
echo "marked by the take: ${before[*]}"
run_ok out "$BLKSNAP" markdirtyblock -d "$dev" -f "$w/m/empty"
run_ok out "$BLKSNAP" markdirtyblock -d "$dev" -r $((1000 * 128 + 5)):1 $((1010 * 128)):256
cbt_expect "$dev" "${before[@]}" 1000=+ 1010-1011=+
ok "markdirtyblock -r marked blocks 1000, 1010 and 1011, -f of an empty file nothing"
mapfile -t blocks < <(file_blocks "$w/m/file" 65536)
echo "the file's blocks: ${blocks[*]}"
[ ${#blocks[@]} -ge $(((size + 65535) / 65536)) ] || fail "filefrag: too few blocks"
declare -A marked0=()
for spec in "${before[@]}"; do marked0[${spec%=*}]=1; done
fresh=0
for b in "${blocks[@]}"; do
	[ -n "${marked0[$b]:-}" ] || fresh=$((fresh + 1))
done
[ $fresh -gt 0 ] || fail "the take marked all the blocks of the file already"
# Without -d, as upstream: the device is the file's, its extents printed.
run_ok out "$BLKSNAP" markdirtyblock -f "$w/m/file"
echo "$out"
cbt_expect "$dev" "${before[@]}" 1000=+ 1010-1011=+ "${blocks[@]/%/=+}"
[ "$(head -n 1 <<<"$out")" = "device path: '/dev/block/$(dev_id "$dev")'" ] ||
	fail "markdirtyblock -f: no device path line"
want=$(filefrag -v -b512 "$w/m/file" | awk -F: '/^ *[0-9]+: / {
	split($3, p, /\.\./); printf "allocate range: ofs=%d cnt=%d\n", p[1], p[2] - p[1] + 1 }')
[ "$(tail -n +2 <<<"$out")" = "$want" ] || fail "markdirtyblock -f: ranges are not the file's extents: $want"
ok "markdirtyblock -f marked the ${#blocks[@]} blocks of the file ($fresh new), nothing else"

step "snapshot_watcher ends when its snapshot is destroyed (an overflow: t_upstream_cli.sh)"
: >"$w/diff2"
snap_create id2 "$w/diff2" 64M "$dev"
"$BLKSNAP" snapshot_watcher -i "$id2" >"$w/watcher" 2>&1 &
pid=$!
on_exit kill "$pid"
sleep 1
kill -0 "$pid" 2>/dev/null || { cat "$w/watcher"; fail "the watcher ended before the destroy"; }
snap_destroy "$id2"
for _ in $(seq 1 50); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the watcher still runs 5 s after the destroy"
wait "$pid"
rc=$?
cat "$w/watcher"
[ $rc = 0 ] || fail "the watcher exited $rc"
cmp "$w/watcher" <(printf 'Start snapshot watcher.\nSnapshot not found\nSnapshot watcher finished\n') ||
	fail "the watcher's output is not upstream's"
ok "snapshot_watcher exited 0 after the destroy"
exit 0
