//! The few bytes of the DNS wire format (RFC 1035) discovery needs: an A query with an EDNS0
//! buffer size, and the IPv4 addresses of its answer.

use crate::error::Error;
use std::net::Ipv4Addr;

/// Record type A.
const TYPE_A: u16 = 1;
/// Record type OPT (EDNS0).
const TYPE_OPT: u16 = 41;
/// Class IN.
const CLASS_IN: u16 = 1;

/// What an answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name exists; these are its A records (possibly none).
    Addresses(Vec<Ipv4Addr>),
    /// NXDOMAIN: the name does not exist (a headless Service with no ready endpoints).
    NoSuchName,
}

/// A recursive query for the A records of `name`, with transaction `id`.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // recursion desired
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // 1 question, 1 additional (OPT)
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Error::Discovery(format!(
                "`{name}` is not a valid DNS name"
            )));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type 41, UDP payload 4096, no extended flags, no options.
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&4096u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(out)
}

/// Parses the answer to query `id`; errors name what is wrong (truncation included).
pub fn parse_answer(id: u16, msg: &[u8]) -> Result<Answer, Error> {
    let u16_at = |at: usize| -> Result<u16, Error> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(cut_short)
    };
    if u16_at(0)? != id {
        return Err(Error::DnsOtherQuery);
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err(Error::Discovery("not an answer".into()));
    }
    if flags & 0x0200 != 0 {
        return Err(Error::Discovery(
            "answer truncated (too many records for UDP)".into(),
        ));
    }
    match flags & 0x000f {
        0 => {}
        3 => return Ok(Answer::NoSuchName),
        rcode => {
            return Err(Error::Discovery(format!(
                "server answered with rcode {rcode}"
            )));
        }
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let kind = u16_at(at)?;
        let class = u16_at(at + 2)?;
        let len = usize::from(u16_at(at + 8)?);
        let data = msg.get(at + 10..at + 10 + len).ok_or_else(cut_short)?;
        if kind == TYPE_A && class == CLASS_IN && len == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(Answer::Addresses(addresses))
}

fn cut_short() -> Error {
    Error::Discovery("answer cut short".into())
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, Error> {
    loop {
        let len = *msg.get(at).ok_or_else(cut_short)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a server writes it: the question echoed, then A records whose names are
    /// compression pointers to it.
    fn answer(id: u16, rcode: u8, ips: &[[u8; 4]]) -> Vec<u8> {
        let query = encode_query(id, "vllm.llm.svc").unwrap();
        let question_end = query.len() - 11; // without the OPT record
        let mut out = query[..question_end].to_vec();
        out[2] = 0x81;
        out[3] = 0x80 | rcode;
        out[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
        out[10..12].copy_from_slice(&[0, 0]);
        for ip in ips {
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            out.extend_from_slice(ip);
        }
        out
    }

    #[test]
    fn a_records_are_read_through_compressed_names() {
        let msg = answer(7, 0, &[[10, 0, 0, 1], [10, 0, 0, 2]]);
        assert_eq!(
            parse_answer(7, &msg).unwrap(),
            Answer::Addresses(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])
        );
        assert_eq!(
            parse_answer(7, &answer(7, 3, &[])).unwrap(),
            Answer::NoSuchName
        );
        assert!(parse_answer(8, &msg).is_err(), "another id");
        assert!(parse_answer(7, &msg[..msg.len() - 2]).is_err(), "cut short");
        assert!(
            parse_answer(7, &answer(7, 2, &[]))
                .unwrap_err()
                .to_string()
                .contains("rcode 2")
        );
        assert!(encode_query(1, "bad..name").is_err());
    }
}
