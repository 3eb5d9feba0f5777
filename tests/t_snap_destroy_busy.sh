# SPDX-License-Identifier: GPL-2.0
# Destroy a snapshot whose image is mounted and being read while the
# original is being written: destroy either succeeds (the image then fails
# or is gone) or fails with EBUSY until the image is unmounted; it never
# hangs, and the writers on the original lose nothing.
. tests/lib.sh
. tests/snap_lib.sh
load_module diff_storage_minimum=16384
snap_workdir w
snap_loop dev 256M
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || fail "mkfs"
mkdir "$w/m" "$w/i"
mount "$dev" "$w/m" || fail "mount"
on_exit umount "$w/m"
for f in $(seq 1 16); do head -c 512K /dev/urandom >"$w/m/f$f"; done
sync
tree_sums "$w/m" >"$w/pre"
: >"$w/diff"
snap_create id "$w/diff" 256M "$dev"
snap_take "$id"
img=$(image_of "$dev")
mount -o ro,noload "$img" "$w/i" || fail "mount the image"
on_exit umount "$w/i"
tree_check "$w/i" "$w/pre" "image before destroy"

# read_all DIR: read every file below DIR (tar would skip the data when
# writing to /dev/null).
read_all() { find "$1" -type f -exec cat {} + >/dev/null 2>&1; }
# Writers: new files on the original, each one's sum recorded once written.
(
	n=0
	while [ ! -e "$w/stop_writers" ] && [ $n -lt 300 ]; do
		n=$((n + 1))
		head -c 128K /dev/urandom >"$w/m/w$n" || exit 1
		(cd "$w/m" && sha256sum "w$n") >>"$w/wsums" || exit 1
		[ $((n % 8)) = 0 ] && { sync || exit 1; }
	done
	exit 0
) &
writer=$!
# Readers of the mounted image, dropping caches so that reads reach it.
readers=()
for _ in 1 2; do
	(
		while [ ! -e "$w/stop_readers" ]; do
			read_all "$w/i" || sleep 0.2
			echo 1 >/proc/sys/vm/drop_caches
		done
	) &
	readers+=($!)
done
on_exit kill "$writer" "${readers[@]}"
on_exit touch "$w/stop_writers" "$w/stop_readers"
stop_readers() {
	touch "$w/stop_readers"
	wait "${readers[@]}"
}
sleep 2

step "destroy with the image mounted and in use"
out=$(timeout -k 5 60 $BLKSNAP snapshot_destroy -i "$id" 2>&1)
rc=$?
echo "$out"
case $rc in
124 | 137) fail "snapshot_destroy hung" ;;
0)
	echo "destroy succeeded with the image mounted"
	sleep 1
	stop_readers
	if mountpoint -q "$w/i"; then
		echo 3 >/proc/sys/vm/drop_caches
		if read_all "$w/i"; then
			fail "the image of the destroyed snapshot still reads"
		fi
		umount "$w/i" || umount -l "$w/i" || fail "umount the destroyed image"
	fi
	[ -e "$img" ] && echo "note: $img still exists after destroy while mounted"
	;;
*)
	grep -qw EBUSY <<<"$out" || fail "destroy failed other than with EBUSY"
	sleep 1
	stop_readers
	tree_check "$w/i" "$w/pre" "image after a refused destroy"
	umount "$w/i" || fail "umount the image"
	snap_destroy "$id"
	;;
esac
[ -e "$img" ] && sleep 1
[ ! -e "$img" ] || fail "$img still there after destroy and umount"

step "the writers on the original lost nothing"
sleep 1
touch "$w/stop_writers"
wait "$writer" || fail "a writer failed"
echo "$(wc -l <"$w/wsums") files written"
umount "$w/m" || fail "umount the original"
fsck.ext4 -fn "$dev" >"$w/fsck" 2>&1 || { cat "$w/fsck"; fail "fsck of the original"; }
mount "$dev" "$w/m" || fail "remount the original"
(cd "$w/m" && sha256sum -c --quiet "$w/wsums") || fail "written files differ"
(cd "$w/m" && sha256sum -c --quiet "$w/pre") || fail "old files differ"
exit 0
