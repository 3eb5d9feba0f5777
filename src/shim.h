/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The contract between the C shim and the Rust crate of blksnap. Rust
 * declares the same functions by hand in src/kapi; keep both in step.
 */
#ifndef BLKSNAP_SHIM_H
#define BLKSNAP_SHIM_H

#include <linux/types.h>

struct bio;
struct bio_vec;
struct blkfilter;
struct block_device;
struct file;
struct gendisk;

/* Implemented in Rust (src/ctl.rs): ioctls of /dev/blksnap-control. */
long blksnap_control_ioctl(unsigned int cmd, unsigned long arg);
/*
 * The head of a disk's handler (src/kapi/disk.rs), where the disk's bios go.
 * Must match HandlerBox in Rust.
 */
struct blksnap_disk_handler {
	void (*submit_bio)(struct blksnap_disk_handler *handler, struct bio *bio);
};

/* Must match TrackingParams in src/kapi/params.rs. */
struct blksnap_tracking_params {
	unsigned int block_minimum_shift;
	unsigned int block_maximum_count;
	unsigned int block_maximum_shift;
};

/* Must match SnapshotParams in src/kapi/params.rs. */
struct blksnap_snapshot_params {
	unsigned int chunk_minimum_shift;
	unsigned int chunk_maximum_count_shift;
	unsigned int chunk_maximum_shift;
	unsigned int chunk_maximum_in_queue;
	unsigned int diff_storage_minimum;
};

/* Must match BdevLimits in src/kapi/bdev.rs. */
struct blksnap_bdev_limits {
	unsigned int logical_block_size;
	unsigned int physical_block_size;
	unsigned int io_min;
};

/* Must match DelayPoint in src/kapi/params.rs. */
enum blksnap_delay_point {
	BLKSNAP_DELAY_COW_DECISION = 1,
	BLKSNAP_DELAY_SNAPSHOT_FOUND = 2,
};

/* Implemented in C (src/shim.c). */
void blksnap_debug_delay(unsigned int point);
void blksnap_tracking_params(struct blksnap_tracking_params *params);
void blksnap_snapshot_params(struct blksnap_snapshot_params *params);
void blksnap_filter_get(struct blkfilter *flt);
void blksnap_filter_put(struct blkfilter *flt);
bool blksnap_filter_attached(struct block_device *bdev, struct blkfilter *flt);
struct file *blksnap_bdev_open(dev_t dev);
void blksnap_bdev_limits(struct block_device *bdev, struct blksnap_bdev_limits *l);
bool blksnap_bdev_unsupported(struct block_device *bdev);
void blksnap_freeze_queue_start(struct block_device *bdev);
void blksnap_freeze_queue_wait(struct block_device *bdev);
bool blksnap_inflight_enter(atomic_t *inflight, atomic_t *draining);
void blksnap_inflight_leave(atomic_t *inflight);
void blksnap_inflight_wait(atomic_t *inflight, atomic_t *draining);
ssize_t blksnap_file_rw_bvec(struct file *file, loff_t *pos, const struct bio_vec *bvec,
			     unsigned int nr, size_t skip, size_t len, bool write, bool direct);
void blksnap_unfreeze_queue(struct block_device *bdev);
loff_t blksnap_file_size(struct file *file);
bool blksnap_file_is_bdev(struct file *file);
int blksnap_file_deny_other_writers(struct file *file);
void blksnap_file_allow_other_writers(struct file *file);
void blksnap_cond_resched(void);
unsigned int blksnap_noio_save(void);
void blksnap_noio_restore(unsigned int flags);
struct gendisk *blksnap_disk_alloc(struct blksnap_disk_handler *handler, const char *name,
				   sector_t capacity, const struct blksnap_bdev_limits *l);
int blksnap_disk_add(struct gendisk *disk);
struct blkfilter *blksnap_current_filter(void);
int blksnap_control_register(void);
void blksnap_control_unregister(void);

#endif /* BLKSNAP_SHIM_H */
