// SPDX-License-Identifier: GPL-2.0
//! Parsing and formatting of argument values: sector ranges, sizes, UUIDs.

use blksnap_uapi::{BlksnapSectors, BlksnapUuid};

pub const SECTOR_SIZE: u64 = 512;

/// Parse "SECTOR:COUNT".
pub fn parse_range(s: &str) -> Result<BlksnapSectors, String> {
    let (offset, count) = s.split_once(':').ok_or("expected SECTOR:COUNT")?;
    Ok(BlksnapSectors {
        offset: offset.parse().map_err(|e| format!("sector: {e}"))?,
        count: count.parse().map_err(|e| format!("count: {e}"))?,
    })
}

/// Parse a size in bytes, with an optional K, M, G or T suffix (powers of
/// 1024), into 512-byte sectors.
pub fn parse_sectors(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.bytes().last().map(|c| c.to_ascii_uppercase()) {
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        Some(b'T') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|e| format!("expected BYTES[K|M|G|T]: {e}"))?;
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or("too large: more than 2^64 bytes")?;
    if bytes % SECTOR_SIZE != 0 {
        return Err(format!("{bytes} bytes is not a multiple of {SECTOR_SIZE} bytes"));
    }
    Ok(bytes / SECTOR_SIZE)
}

/// Lower-case hexadecimal digits of `bytes`, in order.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a UUID written as 8-4-4-4-12 or as 32 hexadecimal digits.
pub fn parse_uuid(s: &str) -> Result<BlksnapUuid, String> {
    let bad = || "expected a UUID: 8-4-4-4-12 or 32 hexadecimal digits".to_string();
    let digits: Vec<u8> = match s.len() {
        32 => s.bytes().collect(),
        36 if s
            .bytes()
            .enumerate()
            .all(|(i, c)| (c == b'-') == matches!(i, 8 | 13 | 18 | 23)) =>
        {
            s.bytes().filter(|&c| c != b'-').collect()
        }
        _ => return Err(bad()),
    };
    let nibble = |c: u8| char::from(c).to_digit(16).ok_or_else(bad);
    let mut id = BlksnapUuid::default();
    for (byte, pair) in id.b.iter_mut().zip(digits.chunks(2)) {
        *byte = (nibble(pair[0])? << 4 | nibble(pair[1])?) as u8;
    }
    Ok(id)
}

/// `id` in the standard 8-4-4-4-12 form, lower case.
pub fn uuid_string(id: &BlksnapUuid) -> String {
    dashed(&hex(&id.b))
}

/// 32 hexadecimal digits `h` in the 8-4-4-4-12 form of a UUID.
pub fn dashed(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_plain_and_suffixed() {
        assert_eq!(parse_sectors("0"), Ok(0));
        assert_eq!(parse_sectors("512"), Ok(1));
        assert_eq!(parse_sectors("1048576"), Ok(2048));
        assert_eq!(parse_sectors("1K"), Ok(2));
        assert_eq!(parse_sectors("1k"), Ok(2));
        assert_eq!(parse_sectors("3M"), Ok(3 << 11));
        assert_eq!(parse_sectors("1G"), Ok(1 << 21));
        assert_eq!(parse_sectors("2T"), Ok(2 << 31));
        assert_eq!(parse_sectors("16777215T"), Ok(16777215 << 31));
    }

    #[test]
    fn sectors_rejected() {
        for bad in ["", "K", "G1", "1.5G", "-1", "1X", "1KB", " 1K", "1 K"] {
            assert!(parse_sectors(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_sectors("511").unwrap_err().contains("multiple of 512"));
        assert!(parse_sectors("1000").unwrap_err().contains("multiple of 512"));
        assert!(parse_sectors("16777216T").unwrap_err().contains("too large"));
        assert!(parse_sectors("18446744073709551615K")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_sectors("18446744073709551616").is_err());
    }

    const ID: &str = "0123abcd-4567-89ef-fedc-ba9876543210";
    const ID_BYTES: [u8; 16] = [
        0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x89, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
    ];

    #[test]
    fn uuid_round_trip() {
        let id = parse_uuid(ID).unwrap();
        assert_eq!(id.b, ID_BYTES);
        assert_eq!(uuid_string(&id), ID);
        assert_eq!(parse_uuid(&ID.replace('-', "")).unwrap(), id);
        assert_eq!(parse_uuid(&ID.to_uppercase()).unwrap(), id);
        let all = BlksnapUuid { b: [0xff; 16] };
        assert_eq!(parse_uuid(&uuid_string(&all)).unwrap(), all);
        assert_eq!(
            uuid_string(&BlksnapUuid::default()),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn uuid_rejected() {
        for bad in [
            "",
            "0123abcd",
            "0123abcd-4567-89ef-fedc-ba987654321",
            "0123abcd-4567-89ef-fedc-ba98765432100",
            "0123abcd4-567-89ef-fedc-ba9876543210",
            "0123abcd-4567-89ef-fedc+ba9876543210",
            "0123abcd-4567-89ef-fedc-ba987654321g",
            "+123abcd-4567-89ef-fedc-ba9876543210",
            "0123abcd45678-9effedcba9876543210",
            "0123abcd456789effedcba987654321z",
            "0123abcd456789effedcba98765432é",
            "{0123abcd-4567-89ef-fedc-ba98765432}",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn range() {
        assert_eq!(parse_range("8:16"), Ok(BlksnapSectors { offset: 8, count: 16 }));
        assert!(parse_range("8").is_err());
        assert!(parse_range("8:x").is_err());
    }
}
