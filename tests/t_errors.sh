# SPDX-License-Identifier: GPL-2.0
# Attach, detach and ctl fail with the errno of the interface.
. tests/lib.sh
load_module
dev=$(new_loop 32M)
raw() { python3 tests/blkfilter.py "$@"; }
check() {
	local want=$1 got
	shift
	got=$(raw "$@")
	echo "$* -> $got"
	[ "$got" = "$want" ] || fail "$*: expected $want, got $got"
}

check ENOENT attach "$dev" no-such-filter
check ENOENT detach "$dev" blksnap
check ENOENT ctl "$dev" blksnap 0
check ok attach "$dev" blksnap
on_exit $BLKSNAP detach -d "$dev"
check EALREADY attach "$dev" blksnap
# The CLI, as upstream's, takes that as success.
[ "$($BLKSNAP attach -d "$dev")" = "Already was attached" ] || fail "CLI attach again"
check EINVAL ctl "$dev" other-filter 0
check EINVAL detach "$dev" other-filter
check ENOTTY ctl "$dev" blksnap 12345
# SNAPSHOTADD and SNAPSHOTINFO without a buffer.
check EINVAL ctl "$dev" blksnap 3
check EINVAL ctl "$dev" blksnap 4
[ "$(filter_of "$dev")" = blksnap ] || fail "errors changed the filter"
check ok detach "$dev" blksnap
expect_errno ENOENT $BLKSNAP detach -d "$dev"
exit 0
