/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The contract between the C shim and the Rust crate of blksnap. Rust
 * declares the same functions by hand in src/kapi; keep both in step.
 */
#ifndef BLKSNAP_SHIM_H
#define BLKSNAP_SHIM_H

/* Implemented in Rust (src/ctl.rs): ioctls of /dev/blksnap-control. */
long blksnap_control_ioctl(unsigned int cmd, unsigned long arg);

/* Implemented in C (src/shim.c). */
int blksnap_control_register(void);
void blksnap_control_unregister(void);

#endif /* BLKSNAP_SHIM_H */
