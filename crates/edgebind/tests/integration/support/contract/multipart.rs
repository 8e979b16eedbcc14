//! A small, strict `multipart/form-data` parser (RFC 7578 / RFC 2046) for checking recorded
//! request bodies. Written here instead of adding `multer`, which needs an async stream; test
//! bodies are small and whole in memory. Never panics on malformed input: it returns an error.

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The value of parameter `param` in a header value such as
/// `multipart/form-data; boundary="abc"` or `form-data; name="metadata"`.
pub fn header_param(value: &str, param: &str) -> Option<String> {
    let mut rest = value.split_once(';')?.1;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let (key, after_key) = rest.split_once('=')?;
        let key = key.trim();
        let after_key = after_key.trim_start();
        let (val, remaining) = if let Some(quoted) = after_key.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            val.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, &quoted[end?..])
        } else {
            let end = after_key.find(';').unwrap_or(after_key.len());
            (after_key[..end].trim().to_string(), &after_key[end..])
        };
        if key.eq_ignore_ascii_case(param) {
            return Some(val);
        }
        rest = remaining;
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parse a whole form body given its `Content-Type` header value.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = header_param(content_type, "boundary")
        .ok_or_else(|| format!("multipart content type '{content_type}' has no boundary"))?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(format!(
            "multipart boundary must be 1-70 characters, got {}",
            boundary.len()
        ));
    }
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let inner_delimiter = [b"\r\n", delimiter.as_slice()].concat();

    // The first delimiter starts the body or follows a preamble line.
    let mut pos = if body.starts_with(&delimiter) {
        delimiter.len()
    } else {
        find(body, &inner_delimiter, 0)
            .map(|p| p + inner_delimiter.len())
            .ok_or("multipart body has no opening boundary")?
    };
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts); // close delimiter; the epilogue is ignored
        }
        // Transport padding, then CRLF.
        while body.get(pos).is_some_and(|b| *b == b' ' || *b == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(format!(
                "multipart part {} : boundary line not followed by CRLF",
                parts.len()
            ));
        }
        pos += 2;
        let headers_end = find(body, b"\r\n\r\n", pos)
            .ok_or_else(|| format!("multipart part {}: headers never end", parts.len()))?;
        let headers = std::str::from_utf8(&body[pos..headers_end])
            .map_err(|_| format!("multipart part {}: headers are not UTF-8", parts.len()))?;
        let content_start = headers_end + 4;
        let content_end = find(body, &inner_delimiter, content_start)
            .ok_or_else(|| format!("multipart part {}: no closing boundary", parts.len()))?;
        parts.push(part_from(
            headers,
            &body[content_start..content_end],
            parts.len(),
        )?);
        pos = content_end + inner_delimiter.len();
    }
}

fn part_from(headers: &str, content: &[u8], index: usize) -> Result<Part, String> {
    let mut disposition = None;
    let mut content_type = None;
    for line in headers.split("\r\n") {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("multipart part {index}: malformed header line"))?;
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.to_string());
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        }
    }
    let disposition =
        disposition.ok_or_else(|| format!("multipart part {index}: no Content-Disposition"))?;
    let kind = disposition.split(';').next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(format!(
            "multipart part {index}: Content-Disposition is '{kind}', not form-data"
        ));
    }
    let name = header_param(&disposition, "name")
        .ok_or_else(|| format!("multipart part {index}: Content-Disposition has no name"))?;
    Ok(Part {
        name,
        filename: header_param(&disposition, "filename"),
        content_type,
        body: content.to_vec(),
    })
}
