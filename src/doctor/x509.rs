//! The little of X.509 doctor shows: subject, names, issuer and expiry.

use std::net::IpAddr;
use std::time::SystemTime;

/// Subject, names, issuer and expiry of a DER certificate, for the TLS line.
pub(super) fn certificate(der: &[u8]) -> (String, Option<SystemTime>) {
    use x509_cert::der::Decode;
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return ("an unreadable certificate".into(), None);
    };
    let tbs = &cert.tbs_certificate;
    let expires = SystemTime::UNIX_EPOCH + tbs.validity.not_after.to_unix_duration();
    let names = tbs
        .extensions
        .iter()
        .flatten()
        // subjectAltName, 2.5.29.17
        .find(|ext| ext.extn_id.as_bytes() == [0x55, 0x1d, 0x11])
        .map(|ext| alt_names(ext.extn_value.as_bytes()))
        .unwrap_or_default();
    let text = format!(
        "certificate subject CN={}, names [{}], issuer CN={}, expires {}",
        common_name(&tbs.subject),
        names.join(", "),
        common_name(&tbs.issuer),
        crate::status::rfc3339(expires)
    );
    (text, Some(expires))
}

/// The DNS names and IP addresses of a subjectAltName extension's value (a DER SEQUENCE
/// of GeneralName: `[2]` dNSName, `[7]` iPAddress), read by hand: x509-cert's decoder
/// for every GeneralName choice would cost the binary more than this whole command.
pub(super) fn alt_names(der: &[u8]) -> Vec<String> {
    /// One TLV: tag, value, rest; `None` when malformed.
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let len = b[..n]
                .iter()
                .fold(0usize, |acc, &x| acc << 8 | usize::from(x));
            b = &b[n..];
            len
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }
    let mut names = Vec::new();
    let Some((0x30, mut items, _)) = tlv(der) else {
        return names;
    };
    while let Some((tag, value, rest)) = tlv(items) {
        match (tag, value.len()) {
            (0x82, _) => names.push(String::from_utf8_lossy(value).into_owned()),
            (0x87, 4) => names.extend(
                <[u8; 4]>::try_from(value)
                    .ok()
                    .map(|v| IpAddr::from(v).to_string()),
            ),
            (0x87, 16) => names.extend(
                <[u8; 16]>::try_from(value)
                    .ok()
                    .map(|v| IpAddr::from(v).to_string()),
            ),
            _ => {}
        }
        items = rest;
    }
    names
}

/// The common name of an X.509 name (what a person recognises the certificate by). Not
/// x509-cert's `Display`, which carries a database of every attribute name (about 100 KB
/// of the binary).
pub(super) fn common_name(name: &x509_cert::name::Name) -> String {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        // commonName, 2.5.4.3
        .find(|atv| atv.oid.as_bytes() == [0x55, 0x04, 0x03])
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_names_reads_dns_names_and_addresses_and_survives_garbage() {
        let mut der = vec![0x30, 0x25, 0x82, 0x09];
        der.extend_from_slice(b"localhost");
        der.extend_from_slice(&[0x87, 0x04, 127, 0, 0, 1]);
        // An rfc822Name ([1]) is skipped; an IPv6 address is read.
        der.extend_from_slice(&[0x81, 0x00, 0x87, 0x10]);
        der.extend_from_slice(&[0; 15]);
        der.push(1);
        assert_eq!(alt_names(&der), ["localhost", "127.0.0.1", "::1"]);
        for cut in 0..der.len() {
            let _ = alt_names(&der[..cut]);
        }
        assert!(alt_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
    }
}
