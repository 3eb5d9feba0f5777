// SPDX-License-Identifier: GPL-2.0
//! The metadata of a restore point, NAME.ID.json: what the point holds, the
//! change tracking state it was taken at (which the next incremental backup
//! starts from) and the names of its files. It is written last, once the
//! image and checksums are on disk: a point exists when its metadata does.

use crate::copy::NewFile;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a backup made the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every block of the device.
    Full,
    /// The blocks change tracking marked since the previous point.
    Incremental,
    /// The blocks whose checksum differs from the previous point's.
    Checksum,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
            Kind::Checksum => "checksum",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The point's number among the device's points, from 1.
    pub id: u32,
    /// The device backed up, as given.
    pub device: String,
    /// Its device number, major:minor.
    pub device_number: String,
    /// Its size in bytes, which is the image's virtual size.
    pub device_capacity: u64,
    /// The change tracking block size in bytes.
    pub block_size: u32,
    /// The change tracking generation, 32 hexadecimal digits.
    pub generation_id: String,
    /// The number of the snapshot the point is a copy of, in that generation.
    pub changes_number: u8,
    /// When the snapshot was taken, in seconds since the epoch.
    pub time: u64,
    pub kind: Kind,
    /// The bytes read from the snapshot.
    pub bytes_read: u64,
    /// The bytes of data stored in the point's image (zeros take none).
    pub bytes_stored: u64,
    /// The image, a qcow2 file in the same directory.
    pub image: String,
    /// Its checksums, in the same directory.
    pub sums: String,
}

impl Meta {
    fn check(&self) -> Result<()> {
        if self.generation_id.len() != 32 || !self.generation_id.bytes().all(|c| c.is_ascii_hexdigit()) {
            bail!(
                "generation_id {:?} is not 32 hexadecimal digits",
                self.generation_id
            );
        }
        if !self.block_size.is_power_of_two() {
            bail!("block_size {} is not a power of two", self.block_size);
        }
        // The files are in the point's directory: no path may lead out of it.
        for name in [&self.image, &self.sums] {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                bail!("{name:?} is not a file name");
            }
        }
        Ok(())
    }
}

/// The metadata at `path`.
pub fn load(path: &Path) -> Result<Meta> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta: Meta = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not restore point metadata", path.display()))?;
    meta.check()
        .with_context(|| format!("{} is not valid", path.display()))?;
    Ok(meta)
}

/// Write `meta` to `path` at once: a crash leaves either nothing new or all.
pub fn save(path: &Path, meta: &Meta) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(meta)?;
    text.push(b'\n');
    let file = NewFile::create(path)?;
    file.write_at(&text, 0)?;
    file.commit()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn meta() -> Meta {
        Meta {
            id: 3,
            device: "/dev/loop0".into(),
            device_number: "7:0".into(),
            device_capacity: 1 << 28,
            block_size: 65536,
            generation_id: "00112233445566778899aabbccddeeff".into(),
            changes_number: 7,
            time: 1_700_000_000,
            kind: Kind::Incremental,
            bytes_read: 3 << 16,
            bytes_stored: 2 << 16,
            image: "loop0.3.qcow2".into(),
            sums: "loop0.3.sums".into(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loop0.3.json");
        assert!(load(&path).is_err());
        save(&path, &meta()).unwrap();
        assert_eq!(load(&path).unwrap(), meta());
        // Nothing but the metadata is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["loop0.3.json"]);
    }

    #[test]
    fn format() {
        let value = serde_json::to_value(meta()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "id": 3, "device": "/dev/loop0", "device_number": "7:0",
                "device_capacity": 268435456u64, "block_size": 65536,
                "generation_id": "00112233445566778899aabbccddeeff", "changes_number": 7,
                "time": 1700000000u64, "kind": "incremental", "bytes_read": 196608,
                "bytes_stored": 131072, "image": "loop0.3.qcow2", "sums": "loop0.3.sums"
            })
        );
        // Fields added later are ignored.
        let mut more = value.clone();
        more["comment"] = "x".into();
        assert_eq!(serde_json::from_value::<Meta>(more).unwrap(), meta());
    }

    #[test]
    fn rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut bad = serde_json::to_value(meta()).unwrap();
        let cases = [
            ("generation_id", serde_json::json!("0011")),
            (
                "generation_id",
                serde_json::json!("zz112233445566778899aabbccddeeff"),
            ),
            ("block_size", serde_json::json!(3000)),
            ("changes_number", serde_json::json!(256)),
            ("kind", serde_json::json!("partial")),
            ("image", serde_json::json!("../etc/passwd")),
            ("sums", serde_json::json!("")),
        ];
        for (field, value) in cases {
            let good = bad[field].clone();
            bad[field] = value;
            std::fs::write(&path, bad.to_string()).unwrap();
            let err = format!("{:#}", load(&path).unwrap_err());
            assert!(err.contains("m.json"), "{field}: {err}");
            bad[field] = good;
        }
        std::fs::write(&path, "{").unwrap();
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("is not restore point metadata"));
    }
}
