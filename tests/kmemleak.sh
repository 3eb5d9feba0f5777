# SPDX-License-Identifier: GPL-2.0
# Run by the VM after the tests: on a kernel with kmemleak, scan and print
# what it found, so that the host sees it in the log.
k=/sys/kernel/debug/kmemleak
[ -w $k ] || exit 0
echo scan >$k
sleep 6
echo scan >$k
if [ -s $k ]; then
	echo "kmemleak: unreferenced objects found:"
	cat $k
fi
exit 0
