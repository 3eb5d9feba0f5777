/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The contract between the C shim and the Rust crate of blksnap. Rust
 * declares the same functions by hand in src/kapi; keep both in step.
 */
#ifndef BLKSNAP_SHIM_H
#define BLKSNAP_SHIM_H

/* Implemented in Rust (src/ctl.rs): ioctls of /dev/blksnap-control. */
long blksnap_control_ioctl(unsigned int cmd, unsigned long arg);

/* Must match TrackingParams in src/kapi/params.rs. */
struct blksnap_tracking_params {
	unsigned int block_minimum_shift;
	unsigned int block_maximum_count;
	unsigned int block_maximum_shift;
};

/* Implemented in C (src/shim.c). */
void blksnap_tracking_params(struct blksnap_tracking_params *params);
struct blkfilter *blksnap_current_filter(void);
int blksnap_control_register(void);
void blksnap_control_unregister(void);

#endif /* BLKSNAP_SHIM_H */
