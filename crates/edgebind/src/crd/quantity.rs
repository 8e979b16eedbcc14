//! Parsing Kubernetes quantities (`10Gi`, `500M`, `1e9`) into bytes.
//!
//! k8s-openapi's `Quantity` is an opaque string, so sizes are parsed here. Only what a volume
//! size can be is accepted: non-negative, whole bytes.

/// Parses a quantity into a byte count. Errors say what was wrong, for a condition message.
pub fn parse_bytes(q: &str) -> Result<u64, String> {
    let s = q.trim();
    if s.is_empty() {
        return Err("size is empty; use a quantity such as 10Gi".into());
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "size {q:?} has no number; use a quantity such as 10Gi"
        ));
    }
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if frac_part.contains('.') {
        return Err(format!("size {q:?} is not a number"));
    }
    let (mult, exp10): (u128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        s if s.starts_with('e') || s.starts_with('E') => {
            let e: i32 = s[1..]
                .parse()
                .map_err(|_| format!("size {q:?} has a bad exponent"))?;
            if !(0..=18).contains(&e) {
                return Err(format!("size {q:?} is out of range"));
            }
            (1, e)
        }
        "m" => {
            return Err(format!(
                "size {q:?} is a fraction of a byte; use Ki, Mi, Gi or Ti"
            ));
        }
        other => {
            return Err(format!(
                "size {q:?} has an unknown suffix {other:?}; use Ki, Mi, Gi, Ti or k, M, G, T"
            ));
        }
    };
    let digits = format!("{int_part}{frac_part}");
    let scale = frac_part.len() as i32;
    let mantissa: u128 = digits
        .parse()
        .map_err(|_| format!("size {q:?} is too large"))?;
    let mut value = mantissa
        .checked_mul(mult)
        .ok_or_else(|| format!("size {q:?} is too large"))?;
    let net = exp10 - scale;
    if net >= 0 {
        value = value
            .checked_mul(10u128.pow(net as u32))
            .ok_or_else(|| format!("size {q:?} is too large"))?;
    } else {
        let div = 10u128.pow((-net) as u32);
        if value % div != 0 {
            return Err(format!("size {q:?} is not a whole number of bytes"));
        }
        value /= div;
    }
    u64::try_from(value).map_err(|_| format!("size {q:?} is too large"))
}

/// KiB, rounded up: LINSTOR sizes volumes in KiB and must never get less than asked for.
pub fn bytes_to_kib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

/// Formats KiB as the most readable exact binary quantity (`10Gi`, `1536Mi`).
pub fn format_kib(kib: u64) -> String {
    for (suffix, shift) in [("Pi", 40u32), ("Ti", 30), ("Gi", 20), ("Mi", 10)] {
        let unit = 1u64 << shift;
        if kib >= unit && kib.is_multiple_of(unit) {
            return format!("{}{}", kib / unit, suffix);
        }
    }
    format!("{kib}Ki")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_bytes("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("500M").unwrap(), 500_000_000);
        assert_eq!(parse_bytes("1e9").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "Gi",
            "10Xi",
            "100m",
            "1.2.3Gi",
            "-1Gi",
            "99999999999999999999Ei",
            "0.5",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn kib_rounding_and_format() {
        assert_eq!(bytes_to_kib_ceil(1), 1);
        assert_eq!(bytes_to_kib_ceil(2048), 2);
        assert_eq!(format_kib(10 << 20), "10Gi");
        assert_eq!(format_kib(1536 * 1024), "1536Mi");
        assert_eq!(format_kib(3), "3Ki");
    }
}
