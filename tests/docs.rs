//! The documentation's links hold: every relative link in README.md and docs/*.md names a file
//! that exists, and every `#anchor` a heading of the file it points into, by GitHub's slug rules.
//! And the README stays a short first page (the depth belongs in docs/).
//!
//! Plain std: a small Markdown reader that knows what these files use — ATX headings (`## …`),
//! inline links and images, reference definitions, fenced code blocks and code spans (whose
//! contents are not links or headings). It does not know setext headings or HTML anchors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// One line of a Markdown file: its number, its text, and the code block it belongs to, if any
/// (the fence lines themselves are neither prose nor code).
#[derive(Debug, Clone, Copy)]
struct DocLine<'a> {
    number: usize,
    text: &'a str,
    /// The block's number in the file and its info string (`sh`, `text`, or empty).
    block: Option<(usize, &'a str)>,
}

/// Every line of `text` but the fences of its code blocks, each with the block it is in.
fn doc_lines(text: &str) -> Vec<DocLine<'_>> {
    let mut lines = Vec::new();
    // The fence that opened the current code block: its character, its length, the block.
    let mut fence: Option<(char, usize, (usize, &str))> = None;
    let mut blocks = 0;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match (fence, marker) {
            (None, Some(c)) if run >= 3 => {
                blocks += 1;
                fence = Some((c, run, (blocks, trimmed[run..].trim())));
            }
            (Some((c, len, _)), Some(m))
                if m == c && run >= len && trimmed[run..].trim().is_empty() =>
            {
                fence = None
            }
            _ => lines.push(DocLine {
                number: index + 1,
                text: line,
                block: fence.map(|(_, _, block)| block),
            }),
        }
    }
    lines
}

/// The lines of `text` that are Markdown (not inside a fenced code block), with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    doc_lines(text)
        .into_iter()
        .filter(|line| line.block.is_none())
        .map(|line| (line.number, line.text))
        .collect()
}

/// Where the code spans of `chars` are: the range of each, backticks included. A run of
/// backticks with no closing run of the same length is text.
fn code_spans(chars: &[char]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
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
                spans.push(i..end + run);
                i = end + run;
            }
            None => i += run,
        }
    }
    spans
}

/// `text` with every code span's contents (and its backticks) blanked out; newlines stay, so
/// offsets keep their line.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    for span in code_spans(&chars) {
        for c in &mut out[span] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    }
    out.into_iter().collect()
}

/// The paragraphs of `text`'s prose, each as its lines with their numbers: a code span or a
/// link may run over a line break, never over a blank line or a code block.
fn paragraphs(text: &str) -> Vec<Vec<(usize, &str)>> {
    let mut found = Vec::new();
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let lines = prose_lines(text);
    for (n, (number, line)) in lines.iter().enumerate() {
        let continues = n > 0 && lines[n - 1].0 + 1 == *number;
        if !continues || line.trim().is_empty() {
            found.push(std::mem::take(&mut paragraph));
        }
        if !line.trim().is_empty() {
            paragraph.push((*number, line));
        }
    }
    found.push(paragraph);
    found.retain(|paragraph| !paragraph.is_empty());
    found
}

/// Every link and image destination in `text`, and every reference definition's.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for paragraph in paragraphs(text) {
        links_in(&paragraph, &mut found);
    }
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

// The commands and variables the docs show are the binary's.
//
// Every `oracle …` command in a code block or code span of README.md and docs/*.md names a
// subcommand and flags its `--help` lists; every `ORACLE_*` variable anywhere in them is one a
// `--help` names, and one set before `oracle <command>` is that command's. `./run_nodes.sh`
// takes no arguments, and the variables set before it are node variables or its own. Names the
// binary no longer lists appear only in the one section that documents them (RETIRED_HEADING),
// and `the_retired_settings_do_what_the_docs_say` runs the binary to hold that section to it.

/// The heading of the section that lists the old names of settings and what the binary does
/// with each; nowhere else may they appear.
const RETIRED_HEADING: &str = "Renamed and retired settings";

/// Where the retired settings are documented, for the messages.
const RETIRED_SECTION: &str = "docs/operating.md#renamed-and-retired-settings";

#[test]
fn every_oracle_flag_and_variable_in_the_docs_exists_in_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cli = Cli::read(help);
    // The help was read as it is written: else every command would look like prose.
    let run = &cli.commands[&vec!["run".to_owned()]];
    assert!(run.flags.contains("heartbeat") && run.vars.contains("ORACLE_HEARTBEAT"));
    assert!(
        cli.commands
            .contains_key(&vec!["signers".to_owned(), "add".to_owned()])
    );
    let docs: Vec<(PathBuf, String)> = doc_files(root)
        .into_iter()
        .map(|file| {
            let text = fs::read_to_string(root.join(&file)).unwrap();
            (file, text)
        })
        .collect();
    let script = fs::read_to_string(root.join("run_nodes.sh")).unwrap();
    let problems = check_names(&docs, &cli, &script);
    assert!(
        problems.is_empty(),
        "the docs name what the binary does not take (see `oracle <command> --help`):\n{}",
        problems.join("\n")
    );
}

/// Each row of the retired settings' table says `accepted`, `refused` or `ignored` of its old
/// name; `oracle run` is asked, and must agree. What replaced it must be in `oracle run --help`.
#[test]
fn the_retired_settings_do_what_the_docs_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = parse_help(&help(&["run".to_owned()]));
    let mut rows = Vec::new();
    for file in doc_files(root) {
        let text = fs::read_to_string(root.join(&file)).unwrap();
        rows.extend(retired_rows(&text));
    }
    assert!(
        rows.len() >= 2,
        "no table of retired settings under a heading \"{RETIRED_HEADING}\""
    );
    let dir = tempfile::tempdir().unwrap();
    for row in rows {
        for name in &row.replaced_by {
            assert!(
                run.flags.contains(name) || run.vars.contains(name),
                "{}: replaced by {name}, which `oracle run --help` does not list",
                row.name
            );
        }
        let found = probe(dir.path(), &row.name);
        assert_eq!(
            found, row.verdict,
            "{} (documented: {:?})",
            row.name, row.verdict
        );
    }
}

/// `oracle ARGS --help`, with no `ORACLE_*` variable of the caller's showing in it.
fn help(path: &[String]) -> String {
    let output = oracle().args(path).arg("--help").output().unwrap();
    assert!(output.status.success(), "oracle {path:?} --help failed");
    String::from_utf8(output.stdout).unwrap()
}

/// The binary, with none of the caller's settings.
fn oracle() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oracle"));
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|name| name.starts_with("ORACLE_"))
        {
            command.env_remove(name);
        }
    }
    command.env_remove("DATABASE_URL");
    command
}

/// What a `--help` lists: flags (without `--`), the `ORACLE_*` variables it names, and
/// subcommands.
#[derive(Debug, Default)]
struct Help {
    flags: BTreeSet<String>,
    vars: BTreeSet<String>,
    subcommands: Vec<String>,
}

/// Reads clap's long help: options are lines indented at most 6 columns that start with `-`
/// (their descriptions are indented 10), subcommands the lines under `Commands:`.
fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut in_commands = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        help.vars
            .extend(oracle_vars(line).into_iter().map(str::to_owned));
        if trimmed.trim_end() == "Commands:" {
            in_commands = true;
        } else if in_commands && (trimmed.is_empty() || indent == 0) {
            in_commands = false;
        } else if in_commands && indent == 2 {
            let name = trimmed.split_whitespace().next().unwrap_or_default();
            if name != "help" {
                help.subcommands.push(name.to_owned());
            }
        } else if !in_commands && indent <= 6 && trimmed.starts_with('-') {
            for word in trimmed.split([' ', ',']) {
                if let Some(flag) = word.strip_prefix("--") {
                    help.flags.insert(flag_name(flag).to_owned());
                }
            }
        }
    }
    help
}

/// Every command of the binary (by its path of subcommands, `[]` for `oracle` itself) and
/// what its `--help` lists.
struct Cli {
    commands: BTreeMap<Vec<String>, Help>,
}

impl Cli {
    /// Asks `help` for the top level, then for every subcommand it lists, recursively.
    fn read(help: impl Fn(&[String]) -> String) -> Self {
        let mut commands = BTreeMap::new();
        let mut todo = vec![Vec::new()];
        while let Some(path) = todo.pop() {
            let parsed = parse_help(&help(&path));
            for sub in &parsed.subcommands {
                todo.push([path.clone(), vec![sub.clone()]].concat());
            }
            commands.insert(path, parsed);
        }
        Self { commands }
    }

    /// Every variable some `--help` names.
    fn vars(&self) -> BTreeSet<&str> {
        self.commands
            .values()
            .flat_map(|help| help.vars.iter().map(String::as_str))
            .collect()
    }
}

/// `NAME` of `NAME=value` or `NAME<more>`: the leading run of lowercase letters, digits and `-`.
fn flag_name(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every `ORACLE_…` variable name in `line`.
fn oracle_vars(line: &str) -> Vec<&str> {
    let is_name = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_';
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("ORACLE_").map(|at| from + at) {
        let end = at + bytes[at..].iter().take_while(|c| is_name(**c)).count();
        let name = line[at..end].trim_end_matches('_');
        let starts_a_word =
            at == 0 || !(is_name(bytes[at - 1]) || bytes[at - 1].is_ascii_lowercase());
        if starts_a_word && name.len() > "ORACLE_".len() {
            found.push(name);
        }
        from = end.max(at + 1);
    }
    found
}

/// Whether `name` (a `--flag` or a variable) occurs in `line` as a whole word.
fn mentions(line: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    line.match_indices(name).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// A piece of a doc that may hold commands: one logical line of a code block (continuation
/// lines joined) or one code span.
struct Snippet<'a> {
    file: &'a Path,
    line: usize,
    text: String,
    /// A line of a shell block (`sh`, `bash`, `console`, `shell` or untyped), where a line
    /// starting with `oracle` must be a command of it.
    shell: bool,
}

/// The code of `text`: its code blocks' logical lines and its code spans.
fn snippets<'a>(file: &'a Path, text: &str) -> Vec<Snippet<'a>> {
    let mut found: Vec<Snippet<'a>> = Vec::new();
    let mut open_continuation = false;
    let mut last_block = None;
    for line in doc_lines(text) {
        let Some((block, lang)) = line.block else {
            continue;
        };
        let (body, continues) = match line.text.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (line.text, false),
        };
        match found.last_mut() {
            Some(last) if open_continuation && last_block == Some(block) => {
                last.text.push(' ');
                last.text.push_str(body);
            }
            _ => found.push(Snippet {
                file,
                line: line.number,
                text: body.to_owned(),
                shell: matches!(lang, "" | "sh" | "bash" | "console" | "shell"),
            }),
        }
        open_continuation = continues;
        last_block = Some(block);
    }
    for paragraph in paragraphs(text) {
        let first = paragraph[0].0;
        let joined: Vec<&str> = paragraph.iter().map(|(_, line)| *line).collect();
        let chars: Vec<char> = joined.join("\n").chars().collect();
        for span in code_spans(&chars) {
            let line = first + chars[..span.start].iter().filter(|c| **c == '\n').count();
            let inner: String = chars[span].iter().collect();
            found.push(Snippet {
                file,
                line,
                text: inner.trim_matches('`').replace('\n', " "),
                shell: false,
            });
        }
    }
    found
}

/// The words of shell-like `text`: split at white space, except inside quotes that open a
/// word or a value (`'…'`, `NAME="…"`; the apostrophe of "node's" opens nothing); `;`, `&` and
/// `|` outside quotes are words of their own (`&`).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in text.chars() {
        match quote {
            Some(open) => {
                word.push(c);
                if c == open {
                    quote = None;
                }
            }
            None if c.is_whitespace() || matches!(c, ';' | '&' | '|') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                if !c.is_whitespace() {
                    words.push("&".to_owned());
                }
            }
            None => {
                if matches!(c, '\'' | '"') && (word.is_empty() || word.ends_with('=')) {
                    quote = Some(c);
                }
                word.push(c);
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The simple commands of a snippet: split at `;`, `&`, `|`, comments (a comment's text is read
/// too: it may show a command) and the end of a code span inside it (a log line quoting a
/// command). Each is its words, less quotes, brackets and trailing punctuation, and whether it
/// starts a command line (not in a comment).
fn simple_commands(text: &str) -> Vec<(Vec<String>, bool)> {
    let mut found = Vec::new();
    let mut words = Vec::new();
    let mut at_start = true;
    for raw in shell_words(text) {
        if raw == "&" || raw.starts_with('#') {
            found.push((std::mem::take(&mut words), at_start));
            at_start = raw == "&";
        }
        let word = raw
            .trim_start_matches(['#', '`', '"', '\'', '(', '[', '&'])
            .trim_end_matches(['`', '"', '\'', ')', ']', ',', ':', '.']);
        if !word.is_empty() {
            words.push(word.to_owned());
        }
        if raw.trim_end_matches([',', '.', ')']).ends_with('`') {
            found.push((std::mem::take(&mut words), false));
        }
    }
    found.push((words, at_start));
    found.retain(|(words, _)| !words.is_empty());
    found
}

/// `NAME` of a `NAME=value` word, if it is one.
fn assignment(word: &str) -> Option<&str> {
    let (name, _) = word.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

/// The program a word names, by the last component of its path (`target/debug/oracle` →
/// `oracle`); a URL (`postgres://…/oracle`) names none.
fn program(word: &str) -> &str {
    if word.contains(':') {
        return "";
    }
    word.rsplit('/').next().unwrap_or(word)
}

/// Every problem with the names `docs` (file, text) use: `file:line: what`.
fn check_names(docs: &[(PathBuf, String)], cli: &Cli, run_nodes: &str) -> Vec<String> {
    let retired: Vec<String> = docs
        .iter()
        .flat_map(|(_, text)| retired_rows(text))
        .map(|row| row.name)
        .collect();
    let known_vars = cli.vars();
    let node = &cli.commands[&vec!["run".to_owned()]];
    let mut problems = Vec::new();
    for (file, text) in docs {
        let section = retired_section(text);
        let outside = |line: usize| !section.as_ref().is_some_and(|lines| lines.contains(&line));
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if !outside(number) {
                continue;
            }
            let at = format!("{}:{number}", file.display());
            for name in retired.iter().filter(|name| mentions(line, name)) {
                problems.push(format!(
                    "{at}: {name} is retired: name it only in {RETIRED_SECTION}"
                ));
            }
            for name in oracle_vars(line) {
                if !known_vars.contains(name) && !retired.iter().any(|old| old == name) {
                    problems.push(format!("{at}: {name} is not a variable of the binary"));
                }
            }
        }
        for snippet in snippets(file, text) {
            if outside(snippet.line) {
                check_snippet(&snippet, cli, node, run_nodes, &retired, &mut problems);
            }
        }
    }
    problems
}

/// The `oracle` and `run_nodes.sh` commands of one snippet.
fn check_snippet(
    snippet: &Snippet,
    cli: &Cli,
    node: &Help,
    run_nodes: &str,
    retired: &[String],
    problems: &mut Vec<String>,
) {
    let at = format!("{}:{}", snippet.file.display(), snippet.line);
    for (words, at_start) in simple_commands(&snippet.text) {
        let Some(start) = words
            .iter()
            .position(|word| matches!(program(word), "oracle" | "run_nodes.sh"))
        else {
            continue;
        };
        let assigned: Vec<&str> = words[..start]
            .iter()
            .rev()
            .map_while(|word| assignment(word))
            .collect();
        let args = &words[start + 1..];
        // A bare `run_nodes.sh` is the file's name (a listing); it runs as `./run_nodes.sh`.
        let invoked = words[start].contains('/') || !assigned.is_empty();
        if program(&words[start]) == "run_nodes.sh" && invoked {
            if let Some(arg) = args.first() {
                problems.push(format!(
                    "{at}: run_nodes.sh takes no arguments ({arg}): set ORACLE_<FLAG> instead"
                ));
            }
            for name in assigned {
                let read = if name.starts_with("ORACLE_") {
                    node.vars.contains(name)
                } else {
                    run_nodes.contains(&format!("${{{name}"))
                };
                if !read && !retired.iter().any(|old| old == name) {
                    problems.push(format!("{at}: run_nodes.sh does not read {name}"));
                }
            }
            continue;
        }
        if program(&words[start]) != "oracle" {
            continue;
        }
        // `oracle` followed by neither a subcommand nor a flag is prose ("oracle nodes"),
        // unless it begins a line of a shell block.
        let first = args.first().map(String::as_str).unwrap_or_default();
        let top = &cli.commands[&Vec::new()];
        if !first.starts_with('-') && !top.subcommands.iter().any(|sub| sub == first) {
            let prompt_only = words[..start].iter().all(|word| word == "$");
            if snippet.shell && at_start && prompt_only && !first.is_empty() {
                problems.push(format!("{at}: oracle has no subcommand {first}"));
            }
            continue;
        }
        let mut path: Vec<String> = Vec::new();
        for arg in args {
            if arg == "--" {
                break;
            }
            if let Some(flag) = arg.strip_prefix("--") {
                let flag = flag_name(flag);
                let help = &cli.commands[&path];
                let retired_flag = retired.iter().any(|old| old == &format!("--{flag}"));
                if !flag.is_empty() && !help.flags.contains(flag) && !retired_flag {
                    problems.push(format!("{at}: `oracle {}` has no --{flag}", path.join(" ")));
                }
                continue;
            }
            let deeper = [path.clone(), vec![arg.clone()]].concat();
            if cli.commands.contains_key(&deeper) {
                path = deeper;
            }
        }
        let help = &cli.commands[&path];
        for name in assigned.iter().filter(|name| name.starts_with("ORACLE_")) {
            if !help.vars.contains(*name) && !retired.iter().any(|old| old == name) {
                problems.push(format!(
                    "{at}: `oracle {}` does not read {name}",
                    path.join(" ")
                ));
            }
        }
    }
}

/// What the binary does with a retired name, as the docs say it and as a probe finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Still works, as its new name.
    Accepted,
    /// Stops the command with an error naming it.
    Refused,
    /// Has no effect at all.
    Ignored,
}

/// One row of the retired settings' table.
#[derive(Debug)]
struct RetiredRow {
    /// The old flag (`--price-interval`) or variable.
    name: String,
    /// Flags and variables named in the other cells (what replaced it).
    replaced_by: Vec<String>,
    verdict: Verdict,
}

/// The line numbers of `text`'s retired section: from its heading to the next heading of the
/// same or a higher level.
fn retired_section(text: &str) -> Option<std::ops::Range<usize>> {
    let headings: Vec<(usize, usize, String)> = prose_lines(text)
        .into_iter()
        .filter_map(|(number, line)| {
            let level = line.trim_start().chars().take_while(|c| *c == '#').count();
            heading_text(line).map(|heading| (number, level, heading))
        })
        .collect();
    let (start, level) = headings
        .iter()
        .find(|(_, _, heading)| heading.trim() == RETIRED_HEADING)
        .map(|(number, level, _)| (*number, *level))?;
    let end = headings
        .iter()
        .find(|(number, other, _)| *number > start && *other <= level)
        .map_or(usize::MAX, |(number, _, _)| *number);
    Some(start..end)
}

/// The rows of the retired section's table: `| `old` | `new` | **verdict** … |`.
fn retired_rows(text: &str) -> Vec<RetiredRow> {
    let Some(section) = retired_section(text) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for (_, line) in prose_lines(text)
        .into_iter()
        .filter(|(number, _)| section.contains(number))
    {
        if !line.trim_start().starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        let spans = |cell: &str| -> Vec<String> {
            let chars: Vec<char> = cell.chars().collect();
            code_spans(&chars)
                .into_iter()
                .map(|span| chars[span].iter().collect::<String>())
                .map(|code| code.trim_matches('`').to_owned())
                .collect()
        };
        let Some(name) = cells
            .first()
            .and_then(|cell| spans(cell).into_iter().next())
            .and_then(|code| code.split_whitespace().next().map(str::to_owned))
        else {
            continue;
        };
        let last = cells.last().unwrap_or(&"");
        let verdict = match last
            .trim()
            .trim_start_matches('*')
            .split([' ', '*', ':', ',', '.'])
            .next()
        {
            Some("accepted") => Verdict::Accepted,
            Some("refused") => Verdict::Refused,
            Some("ignored") => Verdict::Ignored,
            _ => panic!(
                "retired setting {name}: the last cell begins neither accepted, refused nor ignored: {line}"
            ),
        };
        let replaced_by = cells
            .get(1)
            .map(|cell| spans(cell))
            .unwrap_or_default()
            .into_iter()
            .flat_map(|code| {
                code.split_whitespace()
                    .filter(|word| word.starts_with("--") || word.starts_with("ORACLE_"))
                    .map(|word| word.trim_start_matches("--").to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.push(RetiredRow {
            name,
            replaced_by,
            verdict,
        });
    }
    rows
}

/// What `oracle run` does with the retired `name` (a flag, or a variable), given the value
/// `x`, which no setting takes. The node stops before it touches the network or a database:
/// `--observe-interval 10m` is not shorter than the heartbeat (10m).
fn probe(dir: &Path, name: &str) -> Verdict {
    let mut command = oracle();
    command
        .current_dir(dir)
        .args(["run", "--name", "probe", "--observe-interval", "10m"]);
    if name.starts_with("--") {
        command.args([name, "x"]);
    } else {
        command.env(name, "x");
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{name}: {stderr}");
    if stderr.contains("unexpected argument") {
        Verdict::Refused
    } else if stderr.contains("invalid value 'x'") {
        Verdict::Accepted
    } else if stderr.contains(name) {
        Verdict::Refused
    } else if stderr.contains("must be longer than --observe-interval") {
        Verdict::Ignored
    } else {
        panic!("{name}: unexpected outcome: {stderr}")
    }
}

#[test]
fn a_flag_or_variable_the_binary_does_not_take_is_caught() {
    let help = |path: &[String]| -> String {
        match path.join(" ").as_str() {
            "" => "Usage: oracle [OPTIONS] <COMMAND>\n\nCommands:\n  run      Run a node\n  \
                   signers  Members\n  help     Print this\n\nOptions:\n      --log-level \
                   <LOG_LEVEL>\n          [env: ORACLE_LOG_LEVEL=]\n  -h, --help\n"
                .to_owned(),
            "run" => "Options:\n      --heartbeat <HEARTBEAT>\n          Rounds; like \
                      --flush-delay.\n\n          [env: ORACLE_HEARTBEAT=]\n      --password-file \
                      <FILE>\n          [default: the ORACLE_KEY_PASSWORD environment variable]\n"
                .to_owned(),
            "signers" => "Commands:\n  add   Add one\n\nOptions:\n  -h, --help\n".to_owned(),
            "signers add" => {
                "Options:\n      --key <KEY>\n          [env: ORACLE_KEY=]\n".to_owned()
            }
            other => panic!("no help for {other}"),
        }
    };
    let cli = Cli::read(help);
    assert_eq!(cli.commands.len(), 4);
    assert!(
        !cli.commands[&vec!["run".to_owned()]]
            .flags
            .contains("flush-delay")
    );
    let docs = [
        (
            PathBuf::from("README.md"),
            "Set `ORACLE_HEARTBEAT=1m` (`ORACLE_<FLAG>`), not ORACLE_NOPE.\n\n\
             ```sh\n$ oracle run --heartbeat 1m \\\n    --flush-delay 1s   # --nope: a comment\n\
             ORACLE_KEY=x oracle run | oracle signers add --key k --heartbeat 1m\n\
             oracle serve\nNUM_NODES=2 FOO=1 ORACLE_KEY_PASSWORD=p ./run_nodes.sh --heartbeat 1m\n\
             ORACLE_KEY='a b' oracle run\n```\n\n\
             ```text\n4 oracle nodes; oracle: an error; see `oracle run --heartbeat 1m`, not --nope\n\
             psql postgres://u@h/oracle --nope -c 'it is'\n```\n\n\
             `target/debug/oracle --log-level debug run --price-interval 1m`\n"
                .to_owned(),
        ),
        (
            PathBuf::from("docs/operating.md"),
            "## Renamed and retired settings\n\n| old | now | what |\n|---|---|---|\n\
             | `--price-interval D` | `--heartbeat` | accepted |\n\
             | `ORACLE_PRICE_INTERVAL` | `ORACLE_HEARTBEAT` | **refused**: … |\n\n\
             ## Next\n\nNot here: `ORACLE_PRICE_INTERVAL=15s ./run_nodes.sh`.\n"
                .to_owned(),
        ),
    ];
    let problems = check_names(&docs, &cli, "N=${NUM_NODES:-4}");
    let expected = [
        "README.md:1: ORACLE_NOPE is not a variable of the binary",
        "README.md:17: --price-interval is retired: name it only in docs/operating.md#renamed-and-retired-settings",
        "README.md:4: `oracle run` has no --flush-delay",
        "README.md:6: `oracle run` does not read ORACLE_KEY",
        "README.md:6: `oracle signers add` has no --heartbeat",
        "README.md:7: oracle has no subcommand serve",
        "README.md:8: run_nodes.sh takes no arguments (--heartbeat): set ORACLE_<FLAG> instead",
        "README.md:8: run_nodes.sh does not read FOO",
        "README.md:9: `oracle run` does not read ORACLE_KEY",
        "docs/operating.md:10: ORACLE_PRICE_INTERVAL is retired: name it only in docs/operating.md#renamed-and-retired-settings",
    ];
    assert_eq!(problems, expected);
    let rows = retired_rows(&docs[1].1);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, "--price-interval");
    assert_eq!(rows[0].replaced_by, ["heartbeat"]);
    assert_eq!(rows[1].verdict, Verdict::Refused);
    assert_eq!(rows[1].replaced_by, ["ORACLE_HEARTBEAT"]);
}
