//! Random hex from the operating system: the one source of nonces and secrets in qw
//! (run cookies, run folders, admission tickets, the dashboard's tokens).
//!
//! Owns: the one failure behaviour — bytes come from the kernel's generator through
//! getrandom(2), else (a kernel before 3.17, a seccomp filter that denies the call, the
//! statically linked build whose getrandom crate has no fallback of its own) through
//! `/dev/urandom`, the same generator; when neither gives bytes, an `io::Error` saying
//! both reasons, never a predictable fallback (a token must not be guessable, and a nonce
//! that repeats would let two runs or two tickets share a name).
//! Must not: know what the bytes are for.

use std::io::{self, Read};

/// `bytes` random bytes from the OS as lowercase hex (`2 × bytes` digits).
pub(crate) fn hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    fill(
        &mut buf,
        |b| getrandom::fill(b).map_err(getrandom_error),
        URANDOM,
    )?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The kernel generator's device, read when getrandom(2) fails.
const URANDOM: &str = "/dev/urandom";

/// Fill `buf` by `primary`, else from the device at `fallback`.
fn fill(
    buf: &mut [u8],
    primary: impl FnOnce(&mut [u8]) -> io::Result<()>,
    fallback: &str,
) -> io::Result<()> {
    let Err(first) = primary(buf) else {
        return Ok(());
    };
    crate::fs::File::open(fallback)
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|second| {
            io::Error::other(format!(
                "the OS gave no random bytes: getrandom(2) failed ({first}) and so did {second}"
            ))
        })
}

/// getrandom's error as the OS names it (`Function not implemented (os error 38)`).
fn getrandom_error(e: getrandom::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::other(e.to_string()),
    }
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

    /// Without getrandom(2) (ENOSYS on an old kernel, EPERM under seccomp) the bytes
    /// come from `/dev/urandom`: random, not zeros, different each time.
    #[test]
    fn without_getrandom_the_bytes_come_from_dev_urandom() {
        let enosys = |_: &mut [u8]| Err(io::Error::from_raw_os_error(nix::libc::ENOSYS));
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a, enosys, URANDOM).unwrap();
        fill(&mut b, enosys, URANDOM).unwrap();
        assert_ne!(a, [0u8; 32]);
        assert_ne!(a, b);
        let mut untouched = [7u8; 4];
        fill(&mut untouched, |_| Ok(()), "/nonexistent").unwrap();
        assert_eq!(untouched, [7u8; 4], "the primary's bytes are kept");
    }

    /// When neither source gives bytes, the error names both reasons and the path.
    #[test]
    fn when_both_fail_the_error_says_why_each_did() {
        let enosys = |_: &mut [u8]| Err(io::Error::from_raw_os_error(nix::libc::ENOSYS));
        let e = fill(&mut [0u8; 4], enosys, "/nonexistent/urandom").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("the OS gave no random bytes: getrandom(2) failed ("),
            "{text}"
        );
        assert!(text.contains("os error 38"), "{text}");
        assert!(text.contains("/nonexistent/urandom"), "{text}");
        let unsupported = getrandom_error(getrandom::Error::UNSUPPORTED);
        assert_eq!(unsupported.raw_os_error(), None);
        assert!(!unsupported.to_string().is_empty());
    }
}
