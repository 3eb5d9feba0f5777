/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * blksnap: block device snapshots and change block tracking.
 *
 * The interface of the upstream blksnap module, version 2.0.0.0: commands of
 * the "blksnap" block device filter (BLKFILTER_CTL, see linux/blk-filter.h)
 * and ioctls of the control device /dev/blksnap-control.
 */
#ifndef _UAPI_LINUX_BLKSNAP_H
#define _UAPI_LINUX_BLKSNAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define BLKSNAP_CTL "blksnap-control"
#define BLKSNAP_FILTER_NAME "blksnap"
/* Image disks are named BLKSNAP_IMAGE_NAME "-<major>-<minor>" of the original. */
#define BLKSNAP_IMAGE_NAME "blksnap"
#define BLKSNAP 'V'
#define IMAGE_DISK_NAME_LEN 32

/**
 * struct blksnap_uuid - A snapshot or generation identifier.
 * @b:	The 16 bytes of a UUID.
 */
struct blksnap_uuid {
	__u8 b[16];
};

/* Commands of the "blksnap" filter, passed in blkfilter_ctl.cmd. */
enum blkfilter_ctl_blksnap {
	BLKFILTER_CTL_BLKSNAP_CBTINFO = 0,
	BLKFILTER_CTL_BLKSNAP_CBTMAP = 1,
	BLKFILTER_CTL_BLKSNAP_CBTDIRTY = 2,
	BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD = 3,
	BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO = 4,
};

/**
 * struct blksnap_cbtinfo - Result of BLKFILTER_CTL_BLKSNAP_CBTINFO.
 * @device_capacity:	Device capacity in bytes.
 * @block_size:		Tracking block size in bytes.
 * @block_count:	Number of tracking blocks (bytes in the CBT table).
 * @generation_id:	Changes when the table is reset; increments are only
 *			valid within one generation.
 * @changes_number:	Number of the latest snapshot taken in this generation.
 */
struct blksnap_cbtinfo {
	__u64 device_capacity;
	__u32 block_size;
	__u32 block_count;
	struct blksnap_uuid generation_id;
	__u8 changes_number;
};

/**
 * struct blksnap_cbtmap - Argument of BLKFILTER_CTL_BLKSNAP_CBTMAP.
 * @offset:	First byte of the CBT table to read.
 * @length:	Number of bytes to read.
 * @buffer:	User pointer receiving @length bytes.
 */
struct blksnap_cbtmap {
	__u32 offset;
	__u32 length;
	__u64 buffer;
};

/**
 * struct blksnap_sectors - A range of 512-byte sectors.
 * @offset:	First sector.
 * @count:	Number of sectors.
 */
struct blksnap_sectors {
	__u64 offset;
	__u64 count;
};

/**
 * struct blksnap_cbtdirty - Argument of BLKFILTER_CTL_BLKSNAP_CBTDIRTY.
 * @count:		Number of ranges.
 * @dirty_sectors:	User pointer to @count struct blksnap_sectors.
 */
struct blksnap_cbtdirty {
	__u32 count;
	__u64 dirty_sectors;
};

/**
 * struct blksnap_snapshotadd - Argument of BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD.
 * @id:	The snapshot to add the device to.
 */
struct blksnap_snapshotadd {
	struct blksnap_uuid id;
};

/**
 * struct blksnap_snapshotinfo - Result of BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO.
 * @error_code:	0, or the negative errno that made the snapshot fail.
 * @image:	Name of the image disk, empty before the snapshot is taken.
 */
struct blksnap_snapshotinfo {
	__s32 error_code;
	__u8 image[IMAGE_DISK_NAME_LEN];
};

/* Numbers of the control device's ioctls. */
enum blksnap_ioctl {
	BLKSNAP_IOCTL_VERSION = 0,
	BLKSNAP_IOCTL_SNAPSHOT_CREATE = 1,
	BLKSNAP_IOCTL_SNAPSHOT_DESTROY = 2,
	BLKSNAP_IOCTL_SNAPSHOT_TAKE = 3,
	BLKSNAP_IOCTL_SNAPSHOT_COLLECT = 4,
	BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT = 5,
};

/**
 * struct blksnap_version - Module version.
 * @major:	2
 * @minor:	0
 * @revision:	0
 * @build:	0
 */
struct blksnap_version {
	__u16 major;
	__u16 minor;
	__u16 revision;
	__u16 build;
};

#define IOCTL_BLKSNAP_VERSION \
	_IOR(BLKSNAP, BLKSNAP_IOCTL_VERSION, struct blksnap_version)

/**
 * struct blksnap_snapshot_create - Argument of IOCTL_BLKSNAP_SNAPSHOT_CREATE.
 * @diff_storage_limit_sect:	Most sectors the difference storage may take.
 * @diff_storage_filename:	User pointer to a NUL-terminated path: a regular
 *				file, a block device, or a directory to make
 *				an O_TMPFILE in.
 * @id:				Returned: the new snapshot's identifier.
 */
struct blksnap_snapshot_create {
	__u64 diff_storage_limit_sect;
	__u64 diff_storage_filename;
	struct blksnap_uuid id;
};

#define IOCTL_BLKSNAP_SNAPSHOT_CREATE \
	_IOWR(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_CREATE, \
	      struct blksnap_snapshot_create)

#define IOCTL_BLKSNAP_SNAPSHOT_DESTROY \
	_IOW(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_DESTROY, struct blksnap_uuid)

#define IOCTL_BLKSNAP_SNAPSHOT_TAKE \
	_IOW(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_TAKE, struct blksnap_uuid)

/**
 * struct blksnap_snapshot_collect - Argument of IOCTL_BLKSNAP_SNAPSHOT_COLLECT.
 * @count:	Size of the array at @ids; returned: the number of snapshots.
 * @ids:	User pointer to @count struct blksnap_uuid, or 0 to ask the count.
 */
struct blksnap_snapshot_collect {
	__u32 count;
	__u64 ids;
};

#define IOCTL_BLKSNAP_SNAPSHOT_COLLECT \
	_IOR(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_COLLECT, \
	     struct blksnap_snapshot_collect)

/* Event codes of struct blksnap_snapshot_event. */
enum blksnap_event_codes {
	blksnap_event_code_corrupted,
	blksnap_event_code_no_space,
};

/**
 * struct blksnap_snapshot_event - Argument of IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT.
 * @id:		The snapshot to wait on.
 * @timeout_ms:	How long to wait.
 * @code:	Returned: enum blksnap_event_codes.
 * @time_label:	Returned: when the event happened.
 * @data:	Returned: the event's data, by @code.
 */
struct blksnap_snapshot_event {
	struct blksnap_uuid id;
	__u32 timeout_ms;
	__u32 code;
	__s64 time_label;
	__u8 data[4096 - 32];
};

#define IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT \
	_IOR(BLKSNAP, BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT, \
	     struct blksnap_snapshot_event)

/**
 * struct blksnap_event_corrupted - Data of blksnap_event_code_corrupted.
 * @dev_id_mj:	Major number of the device whose snapshot failed.
 * @dev_id_mn:	Minor number.
 * @err_code:	Negative errno.
 */
struct blksnap_event_corrupted {
	__u32 dev_id_mj;
	__u32 dev_id_mn;
	__s32 err_code;
};

/**
 * struct blksnap_event_no_space - Data of blksnap_event_code_no_space.
 * @requested_nr_sect:	Sectors the difference storage could not grow by.
 */
struct blksnap_event_no_space {
	__u64 requested_nr_sect;
};

#endif /* _UAPI_LINUX_BLKSNAP_H */
