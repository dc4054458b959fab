//! Random hex from the operating system: the one source of nonces and secrets in qw
//! (run cookies, run folders, admission tickets, the dashboard's tokens).
//!
//! Owns: the one failure behaviour — when the OS gives no random bytes, an `io::Error`
//! saying so, never a predictable fallback (a token must not be guessable, and a nonce
//! that repeats would let two runs or two tickets share a name).
//! Must not: know what the bytes are for.

use std::io;

/// `bytes` random bytes from the OS as lowercase hex (`2 × bytes` digits).
pub(crate) fn hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| io::Error::other(format!("the OS gave no random bytes: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_has_two_digits_a_byte_and_differs_between_calls() {
        let a = hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, hex(16).unwrap());
        assert_eq!(hex(0).unwrap(), "");
    }
}
