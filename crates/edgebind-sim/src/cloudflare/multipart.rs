//! A small `multipart/form-data` reader for Worker uploads (RFC 7578). axum's own multipart
//! support needs an extra crate; uploads here are small and fully buffered, so a direct parser
//! over the bytes is enough.

use bytes::Bytes;

/// One part of a multipart body.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// The `boundary` parameter of a `multipart/form-data` content type, if it is one.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim().trim_matches('"');
            (!v.is_empty()).then(|| v.to_string())
        } else {
            None
        }
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses the body into parts. Errors describe what is malformed, for a 400 answer.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("multipart boundary not found")?;
    pos += delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("malformed multipart delimiter line".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("multipart part without headers end")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "multipart part headers are not UTF-8")?;
        let data_start = head_end + 4;
        let data_end =
            find(body, next_delim.as_bytes(), data_start).ok_or("multipart body not terminated")?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body.slice(data_start..data_end),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            if k == "content-type" {
                part.content_type = Some(v.trim().to_string());
            } else if k == "content-disposition" {
                for param in v.split(';').skip(1) {
                    if let Some((pk, pv)) = param.split_once('=') {
                        let pv = pv.trim().trim_matches('"').to_string();
                        match pk.trim().to_ascii_lowercase().as_str() {
                            "name" => part.name = pv,
                            "filename" => part.filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            }
        }
        if part.name.is_empty() {
            return Err("multipart part without a name".into());
        }
        parts.push(part);
        pos = data_end + next_delim.len();
        if pos > body.len() {
            return Err("multipart body truncated".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts_with_filenames_and_types() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{\"main_module\":\"w.js\"}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"w.js\"\r\nContent-Type: application/javascript+module\r\n\r\nexport default {}\r\n--XyZ--\r\n",
        );
        let parts = parse(&body, "XyZ").expect("valid body");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "metadata");
        assert_eq!(&parts[0].data[..], b"{\"main_module\":\"w.js\"}");
        assert_eq!(parts[1].filename.as_deref(), Some("w.js"));
        assert_eq!(
            parts[1].content_type.as_deref(),
            Some("application/javascript+module")
        );
        assert_eq!(&parts[1].data[..], b"export default {}");
    }

    #[test]
    fn rejects_truncated_bodies_and_reads_boundary() {
        let body =
            Bytes::from_static(b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc");
        assert!(parse(&body, "b").is_err());
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("application/json"), None);
    }
}
