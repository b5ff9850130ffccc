//! The documentation's links hold: every relative link in README.md and docs/*.md names a file
//! that exists, and every `#anchor` a heading of the file it points into, by GitHub's slug rules.
//! And the README stays a short first page (the depth belongs in docs/).
//!
//! Plain std: a small Markdown reader that knows what these files use — ATX headings (`## …`),
//! inline links and images, reference definitions, fenced code blocks and code spans (whose
//! contents are not links or headings). It does not know setext headings or HTML anchors.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The README is the first page a newcomer reads: what it is, start it, test it, where next.
const README_LIMIT: usize = 16 * 1024;

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let problems = check(root, &doc_files(root));
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_readme_stays_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let size = fs::metadata(root.join("README.md")).unwrap().len() as usize;
    assert!(
        size <= README_LIMIT,
        "README.md is {size} bytes, over {README_LIMIT}: move the depth into docs/"
    );
}

/// README.md and every docs/*.md, relative to `root`.
fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every broken link in `files` (relative to `root`), as `file:line: what`.
fn check(root: &Path, files: &[PathBuf]) -> Vec<String> {
    // The anchors of every Markdown file a link points into, read once.
    let mut anchors: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut problems = Vec::new();
    for file in files {
        let text = fs::read_to_string(root.join(file)).unwrap();
        for link in links(&text) {
            let at = format!("{}:{}", file.display(), link.line);
            if let Err(why) = resolve(root, file, &link.target, &mut anchors) {
                problems.push(format!("{at}: ({}) {why}", link.target));
            }
        }
    }
    problems
}

/// Whether `target`, written in `from`, names an existing file and, with `#anchor`, a heading.
fn resolve(
    root: &Path,
    from: &Path,
    target: &str,
    anchors: &mut HashMap<PathBuf, Vec<String>>,
) -> Result<(), String> {
    let lower = target.to_ascii_lowercase();
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
    {
        return Ok(());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_path_buf()
    } else if path.starts_with('/') {
        return Err("an absolute path: links are relative to their file".into());
    } else {
        normalize(&from.parent().unwrap_or(Path::new("")).join(path))
            .ok_or("leaves the repository")?
    };
    let full = root.join(&file);
    if !full.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    let Some(anchor) = anchor else {
        return Ok(());
    };
    if file.extension().is_none_or(|ext| ext != "md") {
        // GitHub's anchors into other files are line numbers: #L10 or #L10-L20.
        return if is_line_anchor(anchor) {
            Ok(())
        } else {
            Err(format!("#{anchor} in a file that is not Markdown"))
        };
    }
    let known = anchors.entry(file.clone()).or_insert_with(|| {
        fs::read_to_string(&full)
            .map(|text| heading_anchors(&text))
            .unwrap_or_default()
    });
    if known.iter().any(|known| known == anchor) {
        Ok(())
    } else {
        Err(format!(
            "no heading of {} has the anchor #{anchor}",
            file.display()
        ))
    }
}

/// `a/b/../c` → `a/c`; `None` if it climbs above the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => parts.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn is_line_anchor(anchor: &str) -> bool {
    let line = |part: &str| {
        part.strip_prefix('L')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match anchor.split_once('-') {
        Some((from, to)) => line(from) && line(to),
        None => line(anchor),
    }
}

/// A link's destination and the line it starts on.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// The lines of `text` that are Markdown (not inside a fenced code block), with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut prose = Vec::new();
    // The fence that opened the current code block: its character and length.
    let mut fence: Option<(char, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match (fence, marker) {
            (None, Some(c)) if run >= 3 => fence = Some((c, run)),
            (Some((c, len)), Some(m))
                if m == c && run >= len && trimmed[run..].trim().is_empty() =>
            {
                fence = None
            }
            (None, _) => prose.push((index + 1, line)),
            (Some(_), _) => {}
        }
    }
    prose
}

/// `text` with every code span's contents (and its backticks) blanked out; newlines stay, so
/// offsets keep their line. A run of backticks with no closing run of the same length is text.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                for c in &mut out[i..end + run] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end + run;
            }
            None => i += run,
        }
    }
    out.into_iter().collect()
}

/// Every link and image destination in `text`, and every reference definition's.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    // Paragraphs: a code span or a link may run over a line break, never over a blank line.
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let lines = prose_lines(text);
    for (n, (number, line)) in lines.iter().enumerate() {
        let continues = n > 0 && lines[n - 1].0 + 1 == *number;
        if !continues || line.trim().is_empty() {
            links_in(&paragraph, &mut found);
            paragraph.clear();
        }
        if !line.trim().is_empty() {
            paragraph.push((*number, line));
        }
    }
    links_in(&paragraph, &mut found);
    found
}

fn links_in(paragraph: &[(usize, &str)], found: &mut Vec<Link>) {
    let Some(&(first, _)) = paragraph.first() else {
        return;
    };
    let joined: Vec<&str> = paragraph.iter().map(|(_, line)| *line).collect();
    let text: Vec<char> = without_code_spans(&joined.join("\n")).chars().collect();
    let line_at = |offset: usize| first + text[..offset].iter().filter(|c| **c == '\n').count();
    // Reference definitions: `[label]: target` at the start of a line.
    let mut start = 0;
    for line in text.split(|c| *c == '\n') {
        let trimmed: String = line.iter().collect::<String>().trim_start().to_owned();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find(']')
            && trimmed[close + 1..].starts_with(':')
            && let Some(target) = trimmed[close + 2..].split_whitespace().next()
        {
            found.push(Link {
                line: line_at(start),
                target: target.trim_matches(['<', '>']).to_owned(),
            });
        }
        start += line.len() + 1;
    }
    // Inline links and images: `[text](target "title")`.
    for open in 0..text.len() {
        if text[open] != '[' || (open > 0 && text[open - 1] == '\\') {
            continue;
        }
        let mut depth = 0;
        let mut close = None;
        for (i, c) in text.iter().enumerate().skip(open) {
            match c {
                '[' if i == open || text[i - 1] != '\\' => depth += 1,
                ']' if text[i - 1] != '\\' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { continue };
        if text.get(close + 1) != Some(&'(') {
            continue;
        }
        if let Some(target) = destination(&text[close + 2..]) {
            found.push(Link {
                line: line_at(open),
                target,
            });
        }
    }
}

/// The destination at the start of what follows `](`: `<…>`, or up to a space or the `)` that
/// balances the opening one.
fn destination(rest: &[char]) -> Option<String> {
    let rest: &[char] = {
        let skip = rest.iter().take_while(|c| c.is_whitespace()).count();
        &rest[skip..]
    };
    if rest.first() == Some(&'<') {
        let end = rest.iter().position(|c| *c == '>')?;
        return Some(rest[1..end].iter().collect());
    }
    let mut depth = 0;
    for (i, c) in rest.iter().enumerate() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(rest[..i].iter().collect()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(rest[..i].iter().collect()),
            _ => {}
        }
    }
    None
}

/// The anchors GitHub gives the headings of `text`, in order (duplicates numbered).
fn heading_anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in prose_lines(text) {
        let Some(heading) = heading_text(line) else {
            continue;
        };
        let slug = slug(&heading);
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The text of an ATX heading line (`## Text ##`), with links reduced to their text.
fn heading_text(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let line = &line[indent..];
    let level = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut rest = rest.trim();
    // A closing run of #s, after a space, is not part of the text.
    let stripped = rest.trim_end_matches('#');
    if stripped.is_empty() || stripped.ends_with([' ', '\t']) {
        rest = stripped.trim_end();
    }
    // `[text](target)` shows as `text`.
    let chars: Vec<char> = rest.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ']' && chars.get(i + 1) == Some(&'(') {
            let end = chars[i..].iter().position(|c| *c == ')').map(|p| i + p);
            if let Some(end) = end {
                i = end + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    Some(out)
}

/// GitHub's anchor for a heading: lowercase; only letters, digits, spaces, hyphens and
/// underscores kept; each space a hyphen.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug("Quick start"), "quick-start");
    assert_eq!(slug("Several pairs: `--pairs`"), "several-pairs---pairs");
    assert_eq!(slug("Reading new rows: `seq`"), "reading-new-rows-seq");
    assert_eq!(slug("`oracle keygen`"), "oracle-keygen");
    assert_eq!(slug("Private network (PSK)"), "private-network-psk");
    assert_eq!(slug("snake_case & 3 → 4"), "snake_case--3--4");
    let text =
        "# A\n## A\n```\n# not a heading\n```\n### A ###\n#not a heading\n## [Linked](x.md) text\n";
    assert_eq!(heading_anchors(text), ["a", "a-1", "a-2", "linked-text"]);
}

#[test]
fn links_in_code_are_not_links() {
    let text = "See [one](a.md#x) and `[code](b.md)`,\n[two\nlines](c.md \"title\") ![img](<d e.png>).\n\n```md\n[fenced](f.md)\n```\n[ref]: g.md\n";
    let targets: Vec<(usize, String)> = links(text)
        .into_iter()
        .map(|link| (link.line, link.target))
        .collect();
    assert_eq!(
        targets,
        [
            (1, "a.md#x".to_owned()),
            (2, "c.md".to_owned()),
            (3, "d e.png".to_owned()),
            (8, "g.md".to_owned()),
        ]
    );
}

#[test]
fn a_broken_link_or_anchor_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("docs")).unwrap();
    fs::write(
        root.join("README.md"),
        "# Top\n\n[ok](docs/a.md#two-words) [gone](docs/missing.md) [bad](docs/a.md#nope)\n\
         [self](#top) [web](https://example.invalid/x#y) [up](../outside.md)\n",
    )
    .unwrap();
    fs::write(
        root.join("docs/a.md"),
        "## Two words\n\n[back](../README.md#top) [code](../src/x.rs#L3) [code](../src/x.rs#main)\n",
    )
    .unwrap();
    fs::create_dir(root.join("src")).unwrap();
    fs::write(root.join("src/x.rs"), "").unwrap();
    let problems = check(root, &doc_files(root));
    let expected = [
        "README.md:3: (docs/missing.md) docs/missing.md does not exist",
        "README.md:3: (docs/a.md#nope) no heading of docs/a.md has the anchor #nope",
        "README.md:4: (../outside.md) leaves the repository",
        "docs/a.md:3: (../src/x.rs#main) #main in a file that is not Markdown",
    ];
    assert_eq!(problems, expected);
}
