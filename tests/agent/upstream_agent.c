// SPDX-License-Identifier: GPL-2.0
/*
 * A backup agent written for upstream blksnap: it uses only upstream's
 * header names (linux/fs.h and linux/blk-filter.h of the patched kernel's
 * headers_install, linux/blksnap.h) and runs every ioctl once, checking
 * upstream's results. Prints one "ok"/"not ok" line per check; exits 1 if
 * any failed.
 *
 * usage: upstream_agent DEVICE STORAGE_DIR
 * DEVICE has no filter attached; STORAGE_DIR takes the difference storage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/blk-filter.h>
#include <linux/blksnap.h>

static int failures;

/* Record a check: @ret is the ioctl's result, @want_errno 0 for success. */
static void check(const char *what, int ret, int want_errno)
{
	int got = ret < 0 ? errno : 0;

	if (got == want_errno) {
		printf("ok - %s\n", what);
	} else {
		printf("not ok - %s: %s, expected %s\n", what,
		       got ? strerror(got) : "success",
		       want_errno ? strerror(want_errno) : "success");
		failures++;
	}
}

static void check_true(const char *what, int cond)
{
	printf("%s - %s\n", cond ? "ok" : "not ok", what);
	if (!cond)
		failures++;
}

static int filter_ctl(int dev, unsigned int cmd, void *buf, unsigned int len)
{
	struct blkfilter_ctl ctl = {
		.cmd = cmd,
		.optlen = len,
		.opt = (uintptr_t)buf,
	};

	strncpy((char *)ctl.name, BLKSNAP_FILTER_NAME, sizeof(ctl.name));
	return ioctl(dev, BLKFILTER_CTL, &ctl);
}

int main(int argc, char **argv)
{
	struct blkfilter_attach attach = { 0 };
	struct blkfilter_detach detach = { 0 };
	struct blksnap_version version;
	struct blksnap_cbtinfo cbtinfo;
	struct blksnap_cbtmap cbtmap;
	struct blksnap_sectors range = { .offset = 0, .count = 8 };
	struct blksnap_cbtdirty cbtdirty = { .count = 1, .dirty_sectors = (uintptr_t)&range };
	struct blksnap_snapshot_create create = { 0 };
	struct blksnap_snapshotadd add;
	struct blksnap_snapshotinfo info;
	struct blksnap_snapshot_collect collect = { 0 };
	struct blksnap_uuid ids[4];
	struct blksnap_snapshot_event *event;
	char image[64], buf[4096];
	unsigned char *map;
	struct stat st;
	int ctl, dev, img;

	if (argc != 3) {
		fprintf(stderr, "usage: %s DEVICE STORAGE_DIR\n", argv[0]);
		return 2;
	}
	ctl = open("/dev/" BLKSNAP_CTL, O_RDWR);
	dev = open(argv[1], O_RDWR);
	if (ctl < 0 || dev < 0 || fstat(dev, &st)) {
		perror("open");
		return 2;
	}
	event = calloc(1, sizeof(*event));

	check("IOCTL_BLKSNAP_VERSION", ioctl(ctl, IOCTL_BLKSNAP_VERSION, &version), 0);
	check_true("version 2.0.0.0", version.major == 2 && version.minor == 0 &&
		   version.revision == 0 && version.build == 0);

	strncpy((char *)attach.name, BLKSNAP_FILTER_NAME, sizeof(attach.name));
	strncpy((char *)detach.name, BLKSNAP_FILTER_NAME, sizeof(detach.name));
	check("BLKFILTER_CTL before the attach",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTINFO, &cbtinfo, sizeof(cbtinfo)), ENOENT);
	check("BLKFILTER_ATTACH", ioctl(dev, BLKFILTER_ATTACH, &attach), 0);
	check("BLKFILTER_ATTACH again", ioctl(dev, BLKFILTER_ATTACH, &attach), EALREADY);

	check("BLKFILTER_CTL_BLKSNAP_CBTINFO",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTINFO, &cbtinfo, sizeof(cbtinfo)), 0);
	check_true("cbtinfo: capacity and blocks",
		   cbtinfo.device_capacity > 0 && cbtinfo.block_count > 0 &&
		   (uint64_t)cbtinfo.block_count * cbtinfo.block_size >= cbtinfo.device_capacity);
	map = calloc(1, cbtinfo.block_count + 1);
	cbtmap = (struct blksnap_cbtmap){ .offset = 0, .length = cbtinfo.block_count,
					  .buffer = (uintptr_t)map };
	check("BLKFILTER_CTL_BLKSNAP_CBTMAP",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTMAP, &cbtmap, sizeof(cbtmap)), 0);
	cbtmap.length = cbtinfo.block_count + 1;
	check("BLKFILTER_CTL_BLKSNAP_CBTMAP past the end",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTMAP, &cbtmap, sizeof(cbtmap)), ENODATA);
	check("BLKFILTER_CTL_BLKSNAP_CBTDIRTY",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTDIRTY, &cbtdirty, sizeof(cbtdirty)), 0);
	range.offset = cbtinfo.device_capacity / 512;
	check("BLKFILTER_CTL_BLKSNAP_CBTDIRTY past the end",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_CBTDIRTY, &cbtdirty, sizeof(cbtdirty)), EINVAL);
	check("BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO in no snapshot",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO, &info, sizeof(info)), 0);
	check_true("no error, no image", info.error_code == 0 && info.image[0] == 0);

	create.diff_storage_limit_sect = 64 << 11;
	create.diff_storage_filename = (uintptr_t)argv[2];
	check("IOCTL_BLKSNAP_SNAPSHOT_CREATE", ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_CREATE, &create), 0);
	memcpy(&add.id, &create.id, sizeof(add.id));
	check("BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &add, sizeof(add)), 0);
	check("BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD again",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &add, sizeof(add)), EALREADY);

	check("IOCTL_BLKSNAP_SNAPSHOT_COLLECT, the number",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &collect), 0);
	check_true("one snapshot", collect.count == 1);
	collect.ids = (uintptr_t)ids;
	check("IOCTL_BLKSNAP_SNAPSHOT_COLLECT, the ids",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &collect), 0);
	check_true("the id of the snapshot",
		   collect.count == 1 && !memcmp(&ids[0], &create.id, sizeof(ids[0])));

	check("IOCTL_BLKSNAP_SNAPSHOT_TAKE", ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, &create.id), 0);
	check("IOCTL_BLKSNAP_SNAPSHOT_TAKE again",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, &create.id), EALREADY);
	check("BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO, &info, sizeof(info)), 0);
	snprintf(image, sizeof(image), "%s-%u-%u", BLKSNAP_IMAGE_NAME,
		 major(st.st_rdev), minor(st.st_rdev));
	check_true("the image is named BLKSNAP_IMAGE_NAME-major-minor",
		   info.error_code == 0 && !strncmp((char *)info.image, image, IMAGE_DISK_NAME_LEN));
	snprintf(image, sizeof(image), "/dev/%.*s", IMAGE_DISK_NAME_LEN, (char *)info.image);
	img = -1;
	for (int i = 0; i < 50 && img < 0; i++, usleep(100000))
		img = open(image, O_RDONLY);
	check_true("the image reads", img >= 0 && read(img, buf, sizeof(buf)) == sizeof(buf));
	if (img >= 0)
		close(img);

	memcpy(&event->id, &create.id, sizeof(event->id));
	event->timeout_ms = 100;
	check("IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT without an event",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, event), ENOENT);
	check("IOCTL_BLKSNAP_SNAPSHOT_DESTROY", ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, &create.id), 0);
	check("IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT after the destroy",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, event), ESRCH);
	check("IOCTL_BLKSNAP_SNAPSHOT_TAKE after the destroy",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, &create.id), ESRCH);
	check("BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD after the destroy",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &add, sizeof(add)), ESRCH);
	check("IOCTL_BLKSNAP_SNAPSHOT_DESTROY again",
	      ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, &create.id), ENODEV);
	check("BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO after the destroy",
	      filter_ctl(dev, BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO, &info, sizeof(info)), 0);
	check_true("no error, no image", info.error_code == 0 && info.image[0] == 0);

	check("BLKFILTER_DETACH", ioctl(dev, BLKFILTER_DETACH, &detach), 0);
	check("BLKFILTER_DETACH again", ioctl(dev, BLKFILTER_DETACH, &detach), ENOENT);
	printf("%d failed\n", failures);
	return failures ? 1 : 0;
}
