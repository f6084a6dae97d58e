//! gRPC over HTTP/2: what the span builder needs from an [`H2Exchange`].
//!
//! A gRPC call is an HTTP/2 stream whose `content-type` is `application/grpc[+proto|;...]` and
//! whose path is `/package.Service/Method`; its outcome is the `grpc-status` trailer (or the
//! trailers-only response headers). Streaming calls need nothing special: the exchange already
//! ends at the final trailer (END_STREAM). Pure functions, no allocation except
//! [`decode_message`].

use super::http2::H2Exchange;
use super::Role;

/// gRPC status code names (`OK` = 0 .. `UNAUTHENTICATED` = 16), as OpenTelemetry spells them.
pub const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

pub const OK: u32 = 0;
pub const UNKNOWN: u32 = 2;
pub const UNIMPLEMENTED: u32 = 12;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;

/// Is this `content-type` gRPC (`application/grpc`, `application/grpc+proto`, `...;params`)?
pub fn is_grpc(content_type: &str) -> bool {
    let Some(rest) = content_type
        .get(..16)
        .filter(|p| p.eq_ignore_ascii_case("application/grpc"))
        .map(|_| &content_type[16..])
    else {
        return false;
    };
    rest.is_empty() || rest.starts_with('+') || rest.starts_with(';')
}

/// Does the exchange's content type say it is a gRPC call? (What the HPACK proofs of
/// `http2_resync.rs` rely on: such a request never sends trailers.)
pub fn is_grpc_exchange(x: &H2Exchange) -> bool {
    x.content_type.as_deref().is_some_and(is_grpc)
}

/// Is this exchange a gRPC call, for its span and histogram? When a content type was seen, it
/// says; when none was (the request's headers hidden or joined after, the answer's hidden, or
/// its `content-type` by an index HPACK could not resolve), a `grpc-status` in the answer (its
/// trailers, or a trailers-only answer) proves it: nothing but a gRPC server sends one. A call
/// known only by a reset has no such proof and stays an HTTP request.
pub fn is_grpc_call(x: &H2Exchange) -> bool {
    match x.content_type.as_deref() {
        Some(ct) => is_grpc(ct),
        None => x.grpc_status.is_some(),
    }
}

/// `/package.Service/Method` -> (`package.Service`, `Method`); `None` for anything else.
pub fn split_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// The name of a gRPC status code, `None` past 16.
pub fn status_name(code: u32) -> Option<&'static str> {
    STATUS_NAMES.get(code as usize).copied()
}

/// The call's status: the `grpc-status` trailer, or, when the server answered without one, the
/// code the gRPC spec maps its HTTP status to (`http-grpc-status-mapping.md`). `None` when
/// neither was seen (e.g. headers could not be decoded, or no response).
pub fn call_status(x: &H2Exchange) -> Option<u32> {
    if let Some(s) = x.grpc_status {
        return Some(s);
    }
    match x.status? {
        400 => Some(INTERNAL),
        401 => Some(16),
        403 => Some(7),
        404 => Some(UNIMPLEMENTED),
        429 | 502..=504 => Some(UNAVAILABLE),
        // A 200 that ended without trailers: the stream was cut; status unknown.
        200 => None,
        _ => Some(UNKNOWN),
    }
}

/// Whether a status code makes the span an error (OpenTelemetry RPC conventions): any
/// non-OK status on the client; on the server only the codes that mean a server fault.
pub fn is_error(code: u32, role: Role) -> bool {
    match role {
        Role::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
        Role::Client | Role::Unknown => code != OK,
    }
}

/// Percent-decode a `grpc-message` value (the gRPC wire encoding); invalid escapes stay as is.
pub fn decode_message(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("application/grpc;charset=utf-8"));
        assert!(is_grpc("Application/GRPC"));
        assert!(!is_grpc("application/grpc-web"));
        assert!(!is_grpc("application/json"));
        assert!(!is_grpc("application/grp"));
    }

    #[test]
    fn methods() {
        assert_eq!(
            split_method("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter", "SayHello"))
        );
        assert_eq!(split_method("/Svc/M"), Some(("Svc", "M")));
        for bad in ["", "/", "//M", "/Svc/", "Svc/M", "/a/b/c", "/index.html"] {
            assert_eq!(split_method(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(status_name(0), Some("OK"));
        assert_eq!(status_name(5), Some("NOT_FOUND"));
        assert_eq!(status_name(16), Some("UNAUTHENTICATED"));
        assert_eq!(status_name(17), None);
        assert!(is_error(5, Role::Client) && !is_error(5, Role::Server));
        assert!(is_error(13, Role::Server) && !is_error(0, Role::Client));
        let mut x = H2Exchange {
            status: Some(200),
            grpc_status: Some(3),
            ..H2Exchange::default()
        };
        assert_eq!(call_status(&x), Some(3));
        x.grpc_status = None;
        assert_eq!(call_status(&x), None);
        x.status = Some(503);
        assert_eq!(call_status(&x), Some(UNAVAILABLE));
        x.status = Some(404);
        assert_eq!(call_status(&x), Some(UNIMPLEMENTED));
    }

    #[test]
    fn what_makes_a_grpc_call() {
        let mut x = H2Exchange::default();
        assert!(!is_grpc_call(&x));
        x.grpc_status = Some(0);
        assert!(is_grpc_call(&x) && !is_grpc_exchange(&x));
        x.content_type = Some("application/json".into());
        assert!(!is_grpc_call(&x));
        x.content_type = Some("application/grpc+proto".into());
        x.grpc_status = None;
        assert!(is_grpc_call(&x) && is_grpc_exchange(&x));
    }

    #[test]
    fn messages() {
        assert_eq!(decode_message("no%20such%20user"), "no such user");
        assert_eq!(decode_message("caf%C3%A9"), "café");
        assert_eq!(decode_message("100%"), "100%");
        assert_eq!(decode_message("%zz%4"), "%zz%4");
    }
}
