// SPDX-License-Identifier: GPL-2.0
/*
 * LD_PRELOAD shim for fio in the test VM: fio keeps its job table in
 * System V shared memory, and the fast test kernel has no CONFIG_SYSVIPC
 * (shmget fails with ENOSYS). Serve each segment from a shared anonymous
 * mapping instead: it is visible to fio's job threads and, being
 * MAP_SHARED, to forked job processes too. Segments live until exit.
 * Only used when the guest has no /proc/sysvipc.
 */
#include <errno.h>
#include <stddef.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define MAX_SEGMENTS 64

static void *segments[MAX_SEGMENTS];
static int nr_segments;

int shmget(key_t key, size_t size, int flags)
{
	void *p;

	(void)key;
	(void)flags;
	if (nr_segments == MAX_SEGMENTS) {
		errno = ENOSPC;
		return -1;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		errno = ENOMEM;
		return -1;
	}
	segments[nr_segments] = p;
	return nr_segments++;
}

void *shmat(int id, const void *addr, int flags)
{
	(void)addr;
	(void)flags;
	if (id < 0 || id >= nr_segments) {
		errno = EINVAL;
		return (void *)-1;
	}
	return segments[id];
}

int shmdt(const void *addr)
{
	(void)addr;
	return 0;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	(void)buf;
	if (id < 0 || id >= nr_segments) {
		errno = EINVAL;
		return -1;
	}
	/* IPC_RMID: fio removes a segment right after attaching it. */
	if (cmd == IPC_RMID)
		return 0;
	errno = EINVAL;
	return -1;
}
