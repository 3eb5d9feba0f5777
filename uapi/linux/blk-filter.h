/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Block device filters: user-space interface.
 *
 * A filter is a kernel module that sees every bio submitted to the block
 * device it is attached to. These ioctls, issued on the block device node,
 * attach a filter by name, detach it, and pass commands to it.
 */
#ifndef _UAPI_LINUX_BLK_FILTER_H
#define _UAPI_LINUX_BLK_FILTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define BLKFILTER_NAME_LENGTH	32

/**
 * struct blkfilter_attach - BLKFILTER_ATTACH argument.
 * @name:	Filter name, NUL-padded.
 * @opt:	User pointer to filter-specific options, or 0.
 * @optlen:	Size of the options.
 */
struct blkfilter_attach {
	__u8 name[BLKFILTER_NAME_LENGTH];
	__u64 opt;
	__u32 optlen;
};

/**
 * struct blkfilter_detach - BLKFILTER_DETACH argument.
 * @name:	Name of the filter expected to be attached.
 */
struct blkfilter_detach {
	__u8 name[BLKFILTER_NAME_LENGTH];
};

/**
 * struct blkfilter_ctl - BLKFILTER_CTL argument.
 * @name:	Name of the filter expected to be attached.
 * @cmd:	Filter-specific command.
 * @optlen:	Size of the buffer at @opt; on return, the bytes produced.
 * @opt:	User pointer to the command buffer.
 */
struct blkfilter_ctl {
	__u8 name[BLKFILTER_NAME_LENGTH];
	__u32 cmd;
	__u32 optlen;
	__u64 opt;
};

#define BLKFILTER_ATTACH	_IOWR(0x12, 142, struct blkfilter_attach)
#define BLKFILTER_DETACH	_IOWR(0x12, 143, struct blkfilter_detach)
#define BLKFILTER_CTL		_IOWR(0x12, 144, struct blkfilter_ctl)

#endif /* _UAPI_LINUX_BLK_FILTER_H */
