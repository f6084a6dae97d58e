//! `#[repr(C)]` mirrors of `src/bpf/telegen.h`. Sizes and offsets are checked at compile time.

/// ABI version stamped in every event (2: [`Event::tail`]).
pub const ABI_VERSION: u8 = 2;
/// Largest payload prefix the kernel copies per syscall.
pub const MAX_CAPTURE: u32 = 4096;
/// Largest payload suffix the kernel copies per syscall beyond the prefix.
pub const MAX_TAIL: u32 = 1024;
/// Most CPUs the ring array holds.
pub const MAX_CPUS: u32 = 1024;

pub const EV_DATA: u8 = 1;
pub const EV_CLOSE: u8 = 2;
/// Decrypted TLS payload (OpenSSL uprobes) on the same connection as its socket's events.
pub const EV_TLS_DATA: u8 = 3;
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;
pub const ROLE_UNKNOWN: u8 = 0;
pub const ROLE_SERVER: u8 = 1;
pub const ROLE_CLIENT: u8 = 2;
pub const ALLOW_BY_NAME: u8 = 1;
pub const ALLOW_BY_PID: u8 = 2;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `enum tg_proto`: [`Addr::proto`] of TCP and UDP sockets (the IPPROTO_* numbers).
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// Datagrams reported per sendmmsg/recvmmsg call.
pub const MAX_MMSG: u32 = 8;
/// A connection id holds the CPU that wrote its first record, plus one, from this bit up (0
/// there: no CPU stamped); the bits below count that CPU's connections.
pub const CONN_ID_CPU_SHIFT: u32 = 40;
/// Most UDP ports [`crate::TracerOptions::udp_ports`] may name.
pub const MAX_UDP_PORTS: usize = 64;

/// `struct tg_addr`: IPv4 is stored IPv4-mapped; port in host order.
///
/// `proto` ([`PROTO_TCP`] or [`PROTO_UDP`]) is the same in an event's `local` and `remote`. On a
/// UDP event (one per datagram) `remote` is that datagram's peer: an unconnected socket talks to
/// many, so the flow key of a UDP "connection" is its `conn_id`, not its addresses.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl Addr {
    /// An IPv4 address and port as the kernel side stores them (IPv4-mapped, `AF_INET`); the
    /// protocol is left unset.
    pub fn v4(ip: [u8; 4], port: u16) -> Addr {
        let mut a = Addr {
            port,
            family: AF_INET,
            ..Default::default()
        };
        a.addr[10] = 0xff;
        a.addr[11] = 0xff;
        a.addr[12..].copy_from_slice(&ip);
        a
    }

    /// The address as `std::net::IpAddr` (IPv4-mapped addresses become IPv4).
    pub fn ip(&self) -> std::net::IpAddr {
        let v6 = std::net::Ipv6Addr::from(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        }
    }
}

/// `struct tg_event`: the header of every ring record; `captured` payload bytes follow.
///
/// When the syscall moved more than the capture size (`bytes > captured`), the payload is the
/// first bytes it moved followed by its last `tail` bytes; the `bytes - captured` bytes between
/// them were not copied. See [`Event::split`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event {
    pub conn_id: u64,
    pub seq: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub parent_conn_id: u64,
    pub parent_seq: u64,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    pub bytes: u32,
    pub captured: u32,
    pub kind: u8,
    pub dir: u8,
    pub role: u8,
    pub version: u8,
    pub comm: [u8; 16],
    pub local: Addr,
    pub remote: Addr,
    /// The last `tail` of the `captured` bytes are the last bytes the syscall moved.
    pub tail: u32,
    pub _pad: u32,
}

/// `struct tg_stats`: per-CPU counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub seen: u64,
    pub emitted: u64,
    pub dropped: u64,
    pub conns_opened: u64,
    pub conns_closed: u64,
    pub truncated: u64,
    /// TLS plaintext dropped because its `SSL*` was never tied to a tracked socket.
    pub tls_unmapped: u64,
    /// Encrypted syscall payloads not emitted because the connection carries TLS plaintext.
    pub tls_suppressed: u64,
}

const _: () = assert!(std::mem::size_of::<Addr>() == 24);
const _: () = assert!(std::mem::size_of::<Event>() == 144);
const _: () = assert!(std::mem::offset_of!(Event, tail) == 136);
const _: () = assert!(std::mem::size_of::<Stats>() == 64);
const _: () = assert!(std::mem::offset_of!(Event, pid) == 48);
const _: () = assert!(std::mem::offset_of!(Event, captured) == 64);
const _: () = assert!(std::mem::offset_of!(Event, kind) == 68);
const _: () = assert!(std::mem::offset_of!(Event, comm) == 72);
const _: () = assert!(std::mem::offset_of!(Event, local) == 88);
const _: () = assert!(std::mem::offset_of!(Event, remote) == 112);
const _: () = assert!(std::mem::offset_of!(Addr, proto) == 20);

/// Errors decoding a ring record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {expected}-byte header")]
    Short { got: usize, expected: usize },
    #[error("record has ABI version {got}, expected {expected}")]
    Version { got: u8, expected: u8 },
    #[error("record claims {claimed} payload bytes but carries {got}")]
    Payload { claimed: u32, got: usize },
    #[error("record claims a tail of {tail} bytes in {captured} payload bytes")]
    Tail { tail: u32, captured: u32 },
}

impl Event {
    /// Decode a ring record into its header (copied out, unaligned-safe) and payload slice.
    pub fn decode(rec: &[u8]) -> Result<(Event, &[u8]), DecodeError> {
        const N: usize = std::mem::size_of::<Event>();
        if rec.len() < N {
            return Err(DecodeError::Short {
                got: rec.len(),
                expected: N,
            });
        }
        // SAFETY: `rec` holds at least N bytes; Event is repr(C), made only of integers and
        // byte arrays (every bit pattern is valid); read_unaligned copes with any alignment.
        let ev: Event = unsafe { std::ptr::read_unaligned(rec.as_ptr().cast::<Event>()) };
        if ev.version != ABI_VERSION {
            return Err(DecodeError::Version {
                got: ev.version,
                expected: ABI_VERSION,
            });
        }
        let payload = &rec[N..];
        let claimed = ev.captured as usize;
        if claimed > payload.len() {
            return Err(DecodeError::Payload {
                claimed: ev.captured,
                got: payload.len(),
            });
        }
        if ev.tail > ev.captured {
            return Err(DecodeError::Tail {
                tail: ev.tail,
                captured: ev.captured,
            });
        }
        Ok((ev, &payload[..claimed]))
    }

    /// The payload of `rec`, a record this event was decoded from with [`Event::decode`] (the
    /// same slice `decode` returned; for a caller that must own the record meanwhile).
    /// Panics on any other record shorter than this event claims.
    pub fn payload_of<'a>(&self, rec: &'a [u8]) -> &'a [u8] {
        &rec[std::mem::size_of::<Event>()..][..self.captured as usize]
    }

    /// The payload of a decoded record as (first bytes moved, last bytes moved): the tail is
    /// empty unless bytes in between were not copied. Never panics (a tail longer than the
    /// payload is cut to it).
    pub fn split<'a>(&self, payload: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let tail = (self.tail as usize).min(payload.len());
        payload.split_at(payload.len() - tail)
    }

    /// A datagram on a UDP socket (rather than bytes on a TCP connection).
    pub fn is_udp(&self) -> bool {
        self.remote.proto == PROTO_UDP
    }

    /// The process name as text (up to the first NUL).
    pub fn comm(&self) -> &str {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        std::str::from_utf8(&self.comm[..end]).unwrap_or("?")
    }

    /// Serialize (for tests, benches and the synthetic generator): header then payload (which
    /// ends with the `tail` bytes, if any).
    pub fn encode_into(&self, payload: &[u8], out: &mut Vec<u8>) {
        let mut hdr = *self;
        hdr.captured = payload.len() as u32;
        hdr.tail = hdr.tail.min(hdr.captured);
        // SAFETY: Event is repr(C) plain data with explicit padding fields; viewing it as bytes
        // for its full size reads only initialised memory.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&hdr as *const Event).cast::<u8>(),
                std::mem::size_of::<Event>(),
            )
        };
        out.extend_from_slice(bytes);
        out.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants mirrored from `telegen.h` have its values (a drifted
    /// `TG_CONN_ID_CPU_SHIFT` would leave shards agreeing on owners that no longer drain the
    /// connections' rings).
    #[test]
    fn constants_match_the_c_header() {
        let header = include_str!("bpf/telegen.h");
        let define = |name: &str| -> u64 {
            header
                .lines()
                .find_map(|l| {
                    let rest = l.strip_prefix("#define ")?.strip_prefix(name)?;
                    rest.strip_prefix(' ')?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("#define {name} <number> in telegen.h"))
        };
        assert_eq!(define("TG_ABI_VERSION"), u64::from(ABI_VERSION));
        assert_eq!(define("TG_MAX_CAPTURE"), u64::from(MAX_CAPTURE));
        assert_eq!(define("TG_MAX_TAIL"), u64::from(MAX_TAIL));
        assert_eq!(define("TG_MAX_CPUS"), u64::from(MAX_CPUS));
        assert_eq!(define("TG_MAX_MMSG"), u64::from(MAX_MMSG));
        assert_eq!(define("TG_CONN_ID_CPU_SHIFT"), u64::from(CONN_ID_CPU_SHIFT));
        assert_eq!(define("TG_MAX_UDP_PORTS"), MAX_UDP_PORTS as u64);
    }

    #[test]
    fn round_trip_and_errors() {
        let ev = Event {
            conn_id: 7,
            seq: 3,
            version: ABI_VERSION,
            kind: EV_DATA,
            ..Default::default()
        };
        let mut buf = Vec::new();
        ev.encode_into(b"GET / HTTP/1.1\r\n", &mut buf);
        let (got, payload) = Event::decode(&buf).unwrap();
        assert_eq!(got.conn_id, 7);
        assert_eq!(payload, b"GET / HTTP/1.1\r\n");
        // Padding after the payload (a ring record's length is rounded up) is not payload.
        buf.extend_from_slice(&[0xAA; 5]);
        let (got, payload) = Event::decode(&buf).unwrap();
        assert_eq!(got.payload_of(&buf), payload);
        buf.truncate(buf.len() - 5);
        assert!(matches!(
            Event::decode(&buf[..10]),
            Err(DecodeError::Short { .. })
        ));
        let mut bad = buf.clone();
        bad[std::mem::offset_of!(Event, version)] = 9;
        assert!(matches!(
            Event::decode(&bad),
            Err(DecodeError::Version { got: 9, .. })
        ));
        let cut = &buf[..buf.len() - 2];
        assert!(matches!(
            Event::decode(cut),
            Err(DecodeError::Payload { .. })
        ));
        let mut long_tail = buf.clone();
        long_tail[std::mem::offset_of!(Event, tail)] = 200;
        assert!(matches!(
            Event::decode(&long_tail),
            Err(DecodeError::Tail { tail: 200, .. })
        ));
    }

    #[test]
    fn head_and_tail_split() {
        let ev = Event {
            version: ABI_VERSION,
            bytes: 100,
            tail: 3,
            ..Default::default()
        };
        let mut buf = Vec::new();
        ev.encode_into(b"HEADend", &mut buf);
        let (got, payload) = Event::decode(&buf).unwrap();
        assert_eq!(got.split(payload), (&b"HEAD"[..], &b"end"[..]));
        let none = Event::default();
        assert_eq!(none.split(b"all"), (&b"all"[..], &b""[..]));
        let over = Event {
            tail: 9,
            ..Default::default()
        };
        assert_eq!(over.split(b"ab"), (&b""[..], &b"ab"[..]));
    }

    #[test]
    fn mapped_v4() {
        let a = Addr::v4([127, 0, 0, 1], 80);
        assert_eq!(a.addr[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(
            (a.ip().to_string(), a.port, a.family),
            ("127.0.0.1".into(), 80, AF_INET)
        );
    }
}
