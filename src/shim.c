// SPDX-License-Identifier: GPL-2.0
/*
 * What blksnap needs that Rust on Linux 6.12 cannot express: module
 * parameters (module! has no support for them), the misc device (no Rust
 * abstraction yet) and static inline functions. No logic lives here.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/sched.h>

#include "shim.h"

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

void blksnap_tracking_params(struct blksnap_tracking_params *params)
{
	params->block_minimum_shift = READ_ONCE(tracking_block_minimum_shift);
	params->block_maximum_count = READ_ONCE(tracking_block_maximum_count);
	params->block_maximum_shift = READ_ONCE(tracking_block_maximum_shift);
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
