//! Recognising TLS on the wire (not decrypting it).
//!
//! The kernel emits a TLS connection's handshake (and the first encrypted record, read inside
//! the first `SSL_read`) as ordinary payload before the OpenSSL uprobes deliver its plaintext as
//! `EV_TLS_DATA`. Those bytes must be recognised and skipped, never fed to an L7 parser as if
//! they were plaintext. Pure over bytes, no allocation.

/// Largest TLS record body: 2^14 bytes of plaintext plus the 2048 bytes of expansion TLS 1.2
/// allows (TLS 1.3 allows less).
const MAX_RECORD_BODY: u16 = (1 << 14) + 2048;

/// True when `data` starts with a plausible TLS record header: a known content type
/// (change_cipher_spec, alert, handshake, application_data, heartbeat), protocol version 3.0 to
/// 3.4 (SSL 3.0 .. the TLS 1.3 record layer) and a body length within the protocol's limit.
/// The first five bytes decide; fewer than five is never a record.
pub fn looks_like_tls_record(data: &[u8]) -> bool {
    let [content_type, major, minor, len_hi, len_lo, ..] = *data else {
        return false;
    };
    let len = u16::from_be_bytes([len_hi, len_lo]);
    matches!(content_type, 20..=24) && major == 3 && minor <= 4 && len > 0 && len <= MAX_RECORD_BODY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_record_headers() {
        // ClientHello as curl and Python send it (record version 3.1), 512-byte body.
        assert!(looks_like_tls_record(&[0x16, 3, 1, 0x02, 0x00, 0x01]));
        // ServerHello (3.3), change_cipher_spec, application data, alert.
        assert!(looks_like_tls_record(&[0x16, 3, 3, 0x00, 0x7a, 0x02]));
        assert!(looks_like_tls_record(&[0x14, 3, 3, 0x00, 0x01, 0x01]));
        assert!(looks_like_tls_record(&[0x17, 3, 3, 0x00, 0x35]));
        assert!(looks_like_tls_record(&[0x15, 3, 3, 0x00, 0x02, 0x02, 0x28]));
        // Largest allowed body.
        assert!(looks_like_tls_record(&[0x17, 3, 3, 0x48, 0x00]));
    }

    #[test]
    fn not_records() {
        assert!(!looks_like_tls_record(b""));
        assert!(!looks_like_tls_record(&[0x16, 3, 1, 0x02]), "short header");
        assert!(!looks_like_tls_record(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_tls_record(b"HTTP/1.1 200 OK\r\n"));
        assert!(!looks_like_tls_record(b"PRI * HTTP/2.0\r\n"));
        assert!(
            !looks_like_tls_record(&[0x19, 3, 3, 0x00, 0x10]),
            "unknown type"
        );
        assert!(!looks_like_tls_record(&[0x16, 2, 0, 0x00, 0x10]), "SSL 2");
        assert!(!looks_like_tls_record(&[0x16, 3, 5, 0x00, 0x10]), "version");
        assert!(
            !looks_like_tls_record(&[0x17, 3, 3, 0x48, 0x01]),
            "too long"
        );
        assert!(!looks_like_tls_record(&[0x17, 3, 3, 0x00, 0x00]), "empty");
    }

    #[test]
    fn any_input_is_safe() {
        // Exhaustive over the header bytes that matter, with every prefix length.
        let mut n = 0;
        for t in 0..=255u8 {
            for minor in 0..=8u8 {
                let h = [t, 3, minor, 0x00, 0x10];
                for cut in 0..=h.len() {
                    if looks_like_tls_record(&h[..cut]) {
                        n += 1;
                        assert_eq!(cut, 5);
                    }
                }
            }
        }
        assert_eq!(n, 5 * 5, "five content types by five versions");
    }
}
