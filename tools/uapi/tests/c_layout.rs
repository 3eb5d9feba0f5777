// SPDX-License-Identifier: GPL-2.0
//! The C headers (`uapi/linux/blksnap.h`, and the patched kernel's
//! `linux/fs.h` and `linux/blk-filter.h` from `make headers_install`, whose
//! include directory BLKSNAP_KERNEL_HEADERS names: scripts/test.sh sets it)
//! and the Rust layouts must agree byte for byte.

use blksnap_uapi::*;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

/// Compile and run `layout.c` against the C headers; map "kind name" to value.
fn c_layout() -> BTreeMap<String, u64> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let headers = manifest.join("../../uapi");
    let kernel_headers = std::env::var("BLKSNAP_KERNEL_HEADERS")
        .expect("BLKSNAP_KERNEL_HEADERS: the include directory of the patched kernel's headers_install");
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("uapi-layout");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-Wall", "-Werror", "-I"])
        .arg(&headers)
        .arg("-I")
        .arg(&kernel_headers)
        .arg(manifest.join("tests/layout.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "layout.c does not compile");
    let out = Command::new(&exe).output().expect("run layout");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut w = l.split(' ');
            let key = format!("{} {}", w.next().unwrap(), w.next().unwrap());
            (key, w.next().unwrap().parse().unwrap())
        })
        .collect()
}

macro_rules! rust_layout {
    ($map:ident; $($c:ident = $r:ty { $($cf:ident = $rf:ident),* })*) => {$(
        $map.insert(format!("size {}", stringify!($c)), size_of::<$r>() as u64);
        $($map.insert(format!("offset {}.{}", stringify!($c), stringify!($cf)),
                      offset_of!($r, $rf) as u64);)*
    )*};
}

#[test]
fn c_and_rust_layouts_match() {
    let mut rust = BTreeMap::new();
    rust_layout!(rust;
        blkfilter_attach = BlkfilterAttach { name = name, opt = opt, optlen = optlen }
        blkfilter_detach = BlkfilterDetach { name = name }
        blkfilter_ctl = BlkfilterCtl { name = name, cmd = cmd, optlen = optlen, opt = opt }
        blksnap_uuid = BlksnapUuid { b = b }
        blksnap_cbtinfo = BlksnapCbtinfo { device_capacity = device_capacity,
            block_size = block_size, block_count = block_count,
            generation_id = generation_id, changes_number = changes_number }
        blksnap_cbtmap = BlksnapCbtmap { offset = offset, length = length, buffer = buffer }
        blksnap_sectors = BlksnapSectors { offset = offset, count = count }
        blksnap_cbtdirty = BlksnapCbtdirty { count = count, dirty_sectors = dirty_sectors }
        blksnap_snapshotadd = BlksnapSnapshotadd { id = id }
        blksnap_snapshotinfo = BlksnapSnapshotinfo { error_code = error_code, image = image }
        blksnap_version = BlksnapVersion { major = major, minor = minor,
            revision = revision, build = build }
        blksnap_snapshot_create = BlksnapSnapshotCreate {
            diff_storage_limit_sect = diff_storage_limit_sect,
            diff_storage_filename = diff_storage_filename, id = id }
        blksnap_snapshot_collect = BlksnapSnapshotCollect { count = count, ids = ids }
        blksnap_snapshot_event = BlksnapSnapshotEvent { id = id, timeout_ms = timeout_ms,
            code = code, time_label = time_label, data = data }
        blksnap_event_corrupted = BlksnapEventCorrupted { dev_id_mj = dev_id_mj,
            dev_id_mn = dev_id_mn, err_code = err_code }
        blksnap_event_no_space = BlksnapEventNoSpace { requested_nr_sect = requested_nr_sect }
    );
    for (name, value) in [
        ("BLKFILTER_ATTACH", BLKFILTER_ATTACH),
        ("BLKFILTER_DETACH", BLKFILTER_DETACH),
        ("BLKFILTER_CTL", BLKFILTER_CTL),
        ("IOCTL_BLKSNAP_VERSION", IOCTL_BLKSNAP_VERSION),
        ("IOCTL_BLKSNAP_SNAPSHOT_CREATE", IOCTL_BLKSNAP_SNAPSHOT_CREATE),
        ("IOCTL_BLKSNAP_SNAPSHOT_DESTROY", IOCTL_BLKSNAP_SNAPSHOT_DESTROY),
        ("IOCTL_BLKSNAP_SNAPSHOT_TAKE", IOCTL_BLKSNAP_SNAPSHOT_TAKE),
        ("IOCTL_BLKSNAP_SNAPSHOT_COLLECT", IOCTL_BLKSNAP_SNAPSHOT_COLLECT),
        ("IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT", IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT),
        ("BLKFILTER_CTL_BLKSNAP_CBTINFO", BlkfilterCtlBlksnap::Cbtinfo as u32),
        ("BLKFILTER_CTL_BLKSNAP_CBTMAP", BlkfilterCtlBlksnap::Cbtmap as u32),
        ("BLKFILTER_CTL_BLKSNAP_CBTDIRTY", BlkfilterCtlBlksnap::Cbtdirty as u32),
        ("BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD", BlkfilterCtlBlksnap::Snapshotadd as u32),
        ("BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO", BlkfilterCtlBlksnap::Snapshotinfo as u32),
        ("blksnap_event_code_corrupted", BLKSNAP_EVENT_CODE_CORRUPTED),
        ("blksnap_event_code_no_space", BLKSNAP_EVENT_CODE_NO_SPACE),
    ] {
        rust.insert(format!("ioctl {name}"), u64::from(value));
    }
    assert_eq!(c_layout(), rust);
}

#[test]
fn commands_round_trip() {
    for cmd in 0..5 {
        assert_eq!(BlkfilterCtlBlksnap::from_u32(cmd).map(|c| c as u32), Some(cmd));
    }
    assert_eq!(BlkfilterCtlBlksnap::from_u32(5), None);
}
