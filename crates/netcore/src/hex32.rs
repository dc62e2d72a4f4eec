//! 32-byte values as 64 hex digits: the text form shared by [`PeerId`](crate::PeerId),
//! [`PublicKey`](crate::PublicKey) and the private keys of config files.

use std::fmt;

/// Parses 64 hex digits, with or without a `0x` prefix (AptosNet prints one). The error is
/// what is wrong with the text, for the caller's typed error.
pub fn parse(text: &str) -> Result<[u8; 32], &'static str> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.len() != 64 {
        return Err("expected 64 hex digits");
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(digits, &mut bytes).map_err(|_| "not hex")?;
    Ok(bytes)
}

/// Writes the 64 lowercase hex digits, no prefix, without allocating.
pub(crate) fn write(bytes: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut buf = [0u8; 64];
    // Cannot fail: the output buffer is exactly twice the input length.
    hex::encode_to_slice(bytes, &mut buf).expect("buffer is 2 * 32");
    // Cannot fail: hex output is ASCII.
    f.write_str(std::str::from_utf8(&buf).expect("hex is ascii"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both spellings parse to the same bytes; each malformed input gets its reason.
    #[test]
    fn parses_with_and_without_prefix_and_names_the_fault() {
        let text = "0a".repeat(32);
        assert_eq!(parse(&text), Ok([0x0a; 32]));
        assert_eq!(parse(&format!("0x{text}")), Ok([0x0a; 32]));
        assert_eq!(parse("0a0a"), Err("expected 64 hex digits"));
        assert_eq!(parse(&"0a".repeat(33)), Err("expected 64 hex digits"));
        assert_eq!(parse(&"zz".repeat(32)), Err("not hex"));
        // The prefix is `0x` only, and only once.
        assert_eq!(parse(&format!("0X{text}")), Err("expected 64 hex digits"));
    }
}
