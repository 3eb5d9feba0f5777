// SPDX-License-Identifier: GPL-2.0
/*
 * What blksnap needs that Rust on Linux 6.12 cannot express: module
 * parameters (module! has no support for them), the misc device and the
 * image disk's operations table (no Rust abstraction yet), macros and static
 * inline functions. No logic lives here.
 */
#include <linux/blk-filter.h>
#include <linux/blk-integrity.h>
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/uio.h>
#include <linux/wait_bit.h>

#include "shim.h"

/* Upstream's version, which IOCTL_BLKSNAP_VERSION reports too. */
MODULE_VERSION("2.0.0.0");

/* Module parameters, with the names and defaults of upstream blksnap. */
#define BLKSNAP_PARAM(name, value, desc)		\
	static unsigned int name = value;		\
	module_param(name, uint, 0644);			\
	MODULE_PARM_DESC(name, desc)

BLKSNAP_PARAM(tracking_block_minimum_shift, 16,
	      "Smallest change tracking block: 2^shift bytes");
BLKSNAP_PARAM(tracking_block_maximum_count, 2097152,
	      "Change tracking blocks per device before the block grows");
BLKSNAP_PARAM(tracking_block_maximum_shift, 26,
	      "Largest change tracking block: 2^shift bytes");
BLKSNAP_PARAM(chunk_minimum_shift, 18,
	      "Smallest copy-on-write chunk: 2^shift bytes");
BLKSNAP_PARAM(chunk_maximum_count_shift, 40,
	      "At most 2^shift chunks per device before the chunk grows");
BLKSNAP_PARAM(chunk_maximum_shift, 26,
	      "Largest copy-on-write chunk: 2^shift bytes");
BLKSNAP_PARAM(chunk_maximum_in_queue, 256,
	      "Chunks waiting to be stored before writers are throttled");
BLKSNAP_PARAM(diff_storage_minimum, 2097152,
	      "Sectors the difference storage grows by");

/*
 * Test only: hold a race window open where no kernel mechanism (dm-delay,
 * throttling, fault injection) can reach it. Off unless debug_delay_point
 * names one of enum blksnap_delay_point.
 */
BLKSNAP_PARAM(debug_delay_point, 0,
	      "Test only: where to sleep (1: a write in the filter, before its copy-on-write is decided; 2: SNAPSHOTADD or TAKE, after finding the snapshot)");
BLKSNAP_PARAM(debug_delay_ms, 0, "Test only: how long to delay, in milliseconds");

void blksnap_debug_delay(unsigned int point)
{
	if (unlikely(READ_ONCE(debug_delay_point) == point))
		msleep(READ_ONCE(debug_delay_ms));
}

void blksnap_tracking_params(struct blksnap_tracking_params *params)
{
	params->block_minimum_shift = READ_ONCE(tracking_block_minimum_shift);
	params->block_maximum_count = READ_ONCE(tracking_block_maximum_count);
	params->block_maximum_shift = READ_ONCE(tracking_block_maximum_shift);
}

void blksnap_snapshot_params(struct blksnap_snapshot_params *params)
{
	params->chunk_minimum_shift = READ_ONCE(chunk_minimum_shift);
	params->chunk_maximum_count_shift = READ_ONCE(chunk_maximum_count_shift);
	params->chunk_maximum_shift = READ_ONCE(chunk_maximum_shift);
	params->chunk_maximum_in_queue = READ_ONCE(chunk_maximum_in_queue);
	params->diff_storage_minimum = READ_ONCE(diff_storage_minimum);
}

/*
 * The filter whose ->submit_bio() runs on this task. task_struct's layout
 * depends on the config in ways bindgen does not always follow: let the C
 * compiler find the field.
 */
struct blkfilter *blksnap_current_filter(void)
{
	return current->blk_filter;
}

void blksnap_filter_get(struct blkfilter *flt)
{
	blkfilter_get(flt);
}

void blksnap_filter_put(struct blkfilter *flt)
{
	blkfilter_put(flt);
}

/* Whether @flt is still the filter of @bdev (only compared, never followed). */
bool blksnap_filter_attached(struct block_device *bdev, struct blkfilter *flt)
{
	return rcu_access_pointer(bdev->bd_filter) == flt;
}

/* Open a block device by number for reading, shared with other openers. */
struct file *blksnap_bdev_open(dev_t dev)
{
	return bdev_file_open_by_dev(dev, BLK_OPEN_READ, NULL, NULL);
}

void blksnap_bdev_limits(struct block_device *bdev, struct blksnap_bdev_limits *l)
{
	l->logical_block_size = bdev_logical_block_size(bdev);
	l->physical_block_size = bdev_physical_block_size(bdev);
	l->io_min = bdev_io_min(bdev);
}

/* Integrity metadata and inline encryption cannot be copied on write. */
bool blksnap_bdev_unsupported(struct block_device *bdev)
{
	if (bdev_get_integrity(bdev))
		return true;
#ifdef CONFIG_BLK_INLINE_ENCRYPTION
	if (bdev_get_queue(bdev)->crypto_profile)
		return true;
#endif
	return false;
}

void blksnap_freeze_queue_start(struct block_device *bdev)
{
	blk_freeze_queue_start(bdev_get_queue(bdev));
}

void blksnap_freeze_queue_wait(struct block_device *bdev)
{
	blk_mq_freeze_queue_wait(bdev_get_queue(bdev));
}

void blksnap_unfreeze_queue(struct block_device *bdev)
{
	blk_mq_unfreeze_queue(bdev_get_queue(bdev));
}

/*
 * I/O in flight (src/kapi/inflight.rs). Entering and waiting are full
 * barriers, so an I/O entering and a task starting to wait see each other's
 * earlier stores: the I/O sees the wait (and backs off) or the wait sees the
 * I/O (and waits for it).
 */
bool blksnap_inflight_enter(atomic_t *inflight, atomic_t *draining)
{
	atomic_inc(inflight);
	smp_mb__after_atomic();
	if (likely(!atomic_read(draining)))
		return true;
	blksnap_inflight_leave(inflight);
	return false;
}

void blksnap_inflight_leave(atomic_t *inflight)
{
	/* Only the address is used to wake: the counter may be gone after. */
	if (atomic_dec_and_test(inflight))
		wake_up_var(inflight);
}

void blksnap_inflight_wait(atomic_t *inflight, atomic_t *draining)
{
	atomic_inc(draining);
	smp_mb__after_atomic();
	wait_var_event(inflight, !atomic_read(inflight));
	atomic_dec(draining);
}

/*
 * Move len bytes between a file at *pos and the memory of a vector of pages,
 * from byte skip of it: one call for a whole chunk. Direct I/O (no page
 * cache, no copy) if asked and the file can; it fails with -EINVAL where
 * the file's alignment does not allow it. Returns bytes moved or -errno.
 */
ssize_t blksnap_file_rw_bvec(struct file *file, loff_t *pos, const struct bio_vec *bvec,
			     unsigned int nr, size_t skip, size_t len, bool write, bool direct)
{
	struct iov_iter iter;
	struct kiocb iocb;
	ssize_t ret;

	iov_iter_bvec(&iter, write ? ITER_SOURCE : ITER_DEST, bvec, nr, skip + len);
	iov_iter_advance(&iter, skip);
	init_sync_kiocb(&iocb, file);
	iocb.ki_pos = *pos;
	if (direct && (file->f_mode & FMODE_CAN_ODIRECT))
		iocb.ki_flags |= IOCB_DIRECT;
	if (write)
		ret = vfs_iocb_iter_write(file, &iocb, &iter);
	else
		ret = vfs_iocb_iter_read(file, &iocb, &iter);
	if (ret > 0)
		*pos = iocb.ki_pos;
	return ret;
}

/*
 * A regular file kept as difference storage must not change behind
 * blksnap's back: truncated or overwritten, it would give back wrong data
 * for stored chunks. Deny write access to everybody else, as the kernel does
 * for a running executable (opening it for writing and truncating it fail
 * with ETXTBSY); blksnap's own file, open for writing already, keeps
 * writing. Its own write access stops counting first, so that only another
 * writer makes this fail (ETXTBSY).
 */
int blksnap_file_deny_other_writers(struct file *file)
{
	struct inode *inode = file_inode(file);

	if (!S_ISREG(inode->i_mode) || !(file->f_mode & FMODE_WRITER))
		return -EINVAL;
	put_write_access(inode);
	if (!deny_write_access(file))
		return 0;
	atomic_inc(&inode->i_writecount);
	return -ETXTBSY;
}

/* Undo blksnap_file_deny_other_writers(), before the file is closed. */
void blksnap_file_allow_other_writers(struct file *file)
{
	allow_write_access(file);
	/* blksnap's own write access, which closing the file puts. */
	atomic_inc(&file_inode(file)->i_writecount);
}

bool blksnap_file_is_bdev(struct file *file)
{
	return S_ISBLK(file_inode(file)->i_mode);
}

/* Size in bytes of a regular file or block device; -EINVAL for others. */
loff_t blksnap_file_size(struct file *file)
{
	struct inode *inode = file_inode(file);

	if (S_ISBLK(inode->i_mode))
		return bdev_nr_bytes(file_bdev(file));
	if (S_ISREG(inode->i_mode))
		return i_size_read(inode);
	return -EINVAL;
}

void blksnap_cond_resched(void)
{
	cond_resched();
}

unsigned int blksnap_noio_save(void)
{
	return memalloc_noio_save();
}

void blksnap_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}

static void blksnap_image_submit_bio(struct bio *bio)
{
	struct blksnap_disk_handler *handler = bio->bi_bdev->bd_disk->private_data;

	handler->submit_bio(handler, bio);
}

static const struct block_device_operations blksnap_image_fops = {
	.owner = THIS_MODULE,
	.submit_bio = blksnap_image_submit_bio,
};

/*
 * A bio-based disk without partitions whose bios go to @handler. Its number
 * is allocated when it is added.
 */
struct gendisk *blksnap_disk_alloc(struct blksnap_disk_handler *handler, const char *name,
				   sector_t capacity, const struct blksnap_bdev_limits *l)
{
	struct queue_limits lim = {
		.logical_block_size = l->logical_block_size,
		.physical_block_size = l->physical_block_size,
		.io_min = l->io_min,
	};
	struct gendisk *disk = blk_alloc_disk(&lim, NUMA_NO_NODE);

	if (IS_ERR(disk))
		return disk;
	disk->fops = &blksnap_image_fops;
	disk->private_data = handler;
	disk->flags |= GENHD_FL_NO_PART;
	strscpy(disk->disk_name, name, DISK_NAME_LEN);
	set_capacity(disk, capacity);
	return disk;
}

int blksnap_disk_add(struct gendisk *disk)
{
	return add_disk(disk);
}

static long blksnap_control_unlocked_ioctl(struct file *file, unsigned int cmd,
					   unsigned long arg)
{
	return blksnap_control_ioctl(cmd, arg);
}

static const struct file_operations blksnap_control_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = blksnap_control_unlocked_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice blksnap_control_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "blksnap-control",
	.fops = &blksnap_control_fops,
};

int blksnap_control_register(void)
{
	return misc_register(&blksnap_control_dev);
}

void blksnap_control_unregister(void)
{
	misc_deregister(&blksnap_control_dev);
}
