// SPDX-License-Identifier: GPL-2.0
/* Prints the layout of every uapi struct and the ioctl numbers, one per line. */
#include <stddef.h>
#include <stdio.h>
#include <linux/fs.h>
#include <linux/blk-filter.h>
#include <linux/blksnap.h>

#define SIZE(s) printf("size %s %zu\n", #s, sizeof(struct s))
#define OFF(s, f) printf("offset %s.%s %zu\n", #s, #f, offsetof(struct s, f))
#define NUM(n) printf("ioctl %s %u\n", #n, (unsigned int)(n))

int main(void)
{
	SIZE(blkfilter_attach); OFF(blkfilter_attach, name);
	OFF(blkfilter_attach, opt); OFF(blkfilter_attach, optlen);
	SIZE(blkfilter_detach); OFF(blkfilter_detach, name);
	SIZE(blkfilter_ctl); OFF(blkfilter_ctl, name); OFF(blkfilter_ctl, cmd);
	OFF(blkfilter_ctl, optlen); OFF(blkfilter_ctl, opt);
	SIZE(blksnap_uuid); OFF(blksnap_uuid, b);
	SIZE(blksnap_cbtinfo); OFF(blksnap_cbtinfo, device_capacity);
	OFF(blksnap_cbtinfo, block_size); OFF(blksnap_cbtinfo, block_count);
	OFF(blksnap_cbtinfo, generation_id); OFF(blksnap_cbtinfo, changes_number);
	SIZE(blksnap_cbtmap); OFF(blksnap_cbtmap, offset);
	OFF(blksnap_cbtmap, length); OFF(blksnap_cbtmap, buffer);
	SIZE(blksnap_sectors); OFF(blksnap_sectors, offset); OFF(blksnap_sectors, count);
	SIZE(blksnap_cbtdirty); OFF(blksnap_cbtdirty, count);
	OFF(blksnap_cbtdirty, dirty_sectors);
	SIZE(blksnap_snapshotadd); OFF(blksnap_snapshotadd, id);
	SIZE(blksnap_snapshotinfo); OFF(blksnap_snapshotinfo, error_code);
	OFF(blksnap_snapshotinfo, image);
	SIZE(blksnap_version); OFF(blksnap_version, major); OFF(blksnap_version, minor);
	OFF(blksnap_version, revision); OFF(blksnap_version, build);
	SIZE(blksnap_snapshot_create);
	OFF(blksnap_snapshot_create, diff_storage_limit_sect);
	OFF(blksnap_snapshot_create, diff_storage_filename);
	OFF(blksnap_snapshot_create, id);
	SIZE(blksnap_snapshot_collect); OFF(blksnap_snapshot_collect, count);
	OFF(blksnap_snapshot_collect, ids);
	SIZE(blksnap_snapshot_event); OFF(blksnap_snapshot_event, id);
	OFF(blksnap_snapshot_event, timeout_ms); OFF(blksnap_snapshot_event, code);
	OFF(blksnap_snapshot_event, time_label); OFF(blksnap_snapshot_event, data);
	SIZE(blksnap_event_corrupted); OFF(blksnap_event_corrupted, dev_id_mj);
	OFF(blksnap_event_corrupted, dev_id_mn); OFF(blksnap_event_corrupted, err_code);
	SIZE(blksnap_event_no_space); OFF(blksnap_event_no_space, requested_nr_sect);
	NUM(BLKFILTER_ATTACH); NUM(BLKFILTER_DETACH); NUM(BLKFILTER_CTL);
	NUM(IOCTL_BLKSNAP_VERSION); NUM(IOCTL_BLKSNAP_SNAPSHOT_CREATE);
	NUM(IOCTL_BLKSNAP_SNAPSHOT_DESTROY); NUM(IOCTL_BLKSNAP_SNAPSHOT_TAKE);
	NUM(IOCTL_BLKSNAP_SNAPSHOT_COLLECT); NUM(IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT);
	NUM(BLKFILTER_CTL_BLKSNAP_CBTINFO); NUM(BLKFILTER_CTL_BLKSNAP_CBTMAP);
	NUM(BLKFILTER_CTL_BLKSNAP_CBTDIRTY); NUM(BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD);
	NUM(BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO);
	NUM(blksnap_event_code_corrupted); NUM(blksnap_event_code_no_space);
	return 0;
}
