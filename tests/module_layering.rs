//! The crate's modules depend on each other one way only: no cycle between
//! the top-level modules, none between the submodules of a directory
//! module, and every dependency between top-level modules points down the
//! layering declared in [`LAYERS`].
//!
//! A checker of our own rather than `cargo modules dependencies --acyclic`
//! (too heavy to install in CI). It reads every file under `src/`, blanks
//! comments (doc comments included), string and character literals, drops
//! `#[cfg(test)]` items (and the files of `#[cfg(test)] mod x;`, such as
//! `test_util`), then collects the paths that name the crate:
//! `use crate::…`/`super::…`/`self::…` trees (nested ones flattened),
//! `use child::…` and `child::…` of a module's own submodules, and inline
//! `crate::x::y`/`super::x`/`$crate::x` paths anywhere in code. `super::` is
//! resolved from the module the path is written in (inline `mod` blocks
//! included).
//!
//! `src/lib.rs` is the facade: its re-exports are no dependency, and a path
//! through one (`crate::Error`) is a dependency on the module that defines
//! the item (`error`). A `mod.rs` re-exporting its own submodules is a
//! facade in the same way (`pub use exporter::metrics_handler` in
//! `metrics/mod.rs`). Known blind spot: a name a `mod.rs` re-exports and
//! then uses unqualified in its own code is not counted.
//!
//! Print the graph the checker sees:
//!
//! ```sh
//! GLIMPSE_PRINT_MODULE_GRAPH=1 cargo test --test module_layering -- --nocapture
//! ```

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt::Write as _,
    path::{Path, PathBuf},
};

/// The layering of the top-level modules, bottom first: a module may use
/// the modules of the layers below its own, never one of its own layer nor
/// above. A new top-level module needs a place here.
const LAYERS: &[&[&str]] = &[
    // Shared names, IDs and the metric catalogue; no import from the crate.
    &["error", "ids", "names"],
    &["config"],
    // The OTLP transport the three signals share (destination, runtime,
    // transport, batcher).
    &["otlp"],
    // The three signals never use each other: what they share lives below.
    &["logging", "metrics", "trace"],
    &["http", "propagation", "audit", "health"],
    // Outbound calls: a CLIENT span, then `propagation::inject` inside it.
    &["client"],
    // Builds the parts and installs the globals (`impl Config { fn build }`
    // lives here, not in `config`).
    &["telemetry"],
    // `init()`: `Config::from_env()?.build()?.install()`.
    &["init"],
    // The test helpers install through `init`.
    &["testing"],
];

/// Set to print the graph (with `-- --nocapture`).
const PRINT_VAR: &str = "GLIMPSE_PRINT_MODULE_GRAPH";

#[test]
fn top_level_modules_and_submodules_form_no_cycle() {
    let graph = Graph::of_crate();
    let mut report = String::new();
    for (scope, edges) in graph.scopes() {
        for tangle in tangles(&edges) {
            let members: Vec<&str> = tangle.iter().map(String::as_str).collect();
            let _ = writeln!(
                report,
                "in {scope}, {} import each other:",
                members.join(", ")
            );
        }
        for cycle in cycles(&edges) {
            let _ = writeln!(report, "cycle: {}", cycle.join(" -> "));
            for pair in cycle.windows(2) {
                let key = (pair[0].clone(), pair[1].clone());
                let _ = writeln!(report, "{}", describe_edge(&key, &edges[&key]));
            }
        }
    }
    assert!(
        report.is_empty(),
        "the crate's modules import each other in cycles; arrows must point one way \
         (print the graph: {PRINT_VAR}=1 cargo test --test module_layering -- --nocapture)\n{report}"
    );
}

#[test]
fn top_level_modules_only_use_the_layers_below_their_own() {
    let graph = Graph::of_crate();
    let edges = graph.top_level();
    let mut report = String::new();
    let modules: BTreeSet<&String> = graph.top_level_modules();
    for module in &modules {
        if rank(module).is_none() {
            let _ = writeln!(
                report,
                "module `{module}` has no layer: add it to LAYERS in tests/module_layering.rs"
            );
        }
    }
    for (key @ (from, to), sites) in &edges {
        let (Some(rf), Some(rt)) = (rank(from), rank(to)) else {
            continue; // reported above
        };
        if rf <= rt {
            let way = if rf == rt { "sideways" } else { "up" };
            let _ = writeln!(
                report,
                "{from} (layer {rf}) -> {to} (layer {rt}) points {way}:\n{}",
                describe_edge(key, sites)
            );
        }
    }
    assert!(
        report.is_empty(),
        "the module layering is broken (layers, bottom first: {LAYERS:?})\n{report}"
    );
}

/// Prints the graph when [`PRINT_VAR`] is set; passes otherwise.
#[test]
fn print_the_module_graph_on_request() {
    if std::env::var_os(PRINT_VAR).is_none_or(|v| v.is_empty() || v == "0") {
        return;
    }
    println!("{}", Graph::of_crate().render());
}

/// The layer of top-level `module`, bottom = 0.
fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// One place a dependency is written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Site {
    file: String,
    line: usize,
    path: String,
}

/// Edges `(from, to)` with every place each is written.
type Edges = BTreeMap<(String, String), Vec<Site>>;

fn describe_edge((from, to): &(String, String), sites: &[Site]) -> String {
    let mut out = format!("    {from} -> {to}:");
    for s in sites.iter().take(3) {
        let _ = write!(out, "\n        {}:{}  {}", s.file, s.line, s.path);
    }
    if sites.len() > 3 {
        let _ = write!(out, "\n        (and {} more)", sites.len() - 3);
    }
    out
}

// ---------------------------------------------------------------------------
// Lexing: blank what is not code, then split into tokens.

/// `src` with comments, string literals and character literals replaced by
/// spaces; newlines are kept so lines still count.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, chars: &[char]| {
        out.extend(chars.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        // Line comments, `///` and `//!` included.
        if ch == '/' && next == Some('/') {
            let end = c[i..]
                .iter()
                .position(|&x| x == '\n')
                .map_or(c.len(), |p| i + p);
            blank(&mut out, &c[i..end]);
            i = end;
            continue;
        }
        // Block comments, which nest.
        if ch == '/' && next == Some('*') {
            let (mut j, mut depth) = (i, 0usize);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            let end = j.min(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
            continue;
        }
        let after_ident = i > 0 && is_ident_char(c[i - 1]);
        // Raw strings: r"…", r#"…"#, br"…", cr#"…"#.
        if !after_ident && matches!(ch, 'r' | 'b' | 'c') {
            let r = if ch == 'r' { i } else { i + 1 };
            if c.get(r) == Some(&'r') {
                let mut k = r + 1;
                while c.get(k) == Some(&'#') {
                    k += 1;
                }
                let hashes = k - r - 1;
                if c.get(k) == Some(&'"') {
                    let mut j = k + 1;
                    while j < c.len()
                        && !(c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')))
                    {
                        j += 1;
                    }
                    let end = (j + 1 + hashes).min(c.len());
                    blank(&mut out, &c[i..end]);
                    i = end;
                    continue;
                }
            }
        }
        // Strings ("…", and b"…"/c"…" whose prefix stays as a harmless identifier).
        if ch == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
            continue;
        }
        // Character literals ('x', '\n', '\'', '"'); a lifetime stays.
        if ch == '\'' {
            let end = if next == Some('\\') {
                c[i + 3.min(c.len() - i)..]
                    .iter()
                    .position(|&x| x == '\'')
                    .map(|p| i + 3 + p + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = end {
                let end = end.min(c.len());
                blank(&mut out, &c[i..end]);
                i = end;
                continue;
            }
        }
        out.push(ch);
        i += 1;
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    /// An identifier (raw identifiers without `r#`), `::`, or one
    /// punctuation character. Numbers become `0`.
    text: String,
    line: usize,
}

/// The tokens of stripped code.
fn tokenize(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit() {
            while i < c.len() && (is_ident_char(c[i]) || c[i] == '.') {
                i += 1;
            }
            tokens.push(Token {
                text: "0".into(),
                line,
            });
        } else if is_ident_char(ch) {
            // `r#type` is the identifier `type`.
            if ch == 'r'
                && c.get(i + 1) == Some(&'#')
                && c.get(i + 2).is_some_and(|&x| is_ident_char(x))
            {
                i += 2;
            }
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            tokens.push(Token {
                text: c[start..i].iter().collect(),
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            tokens.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

// ---------------------------------------------------------------------------
// Parsing: the paths a file writes, and its test-only submodules.

/// A path written in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The module the path is written in: the file's module plus any
    /// inline `mod` blocks around it.
    scope: Vec<String>,
    /// The path as written (`super`, `crate`, `self` kept); a glob import
    /// ends in `*`.
    path: Vec<String>,
    line: usize,
    /// From a `use` item, and the name it brings in (alias, or the last
    /// segment; `None` for a glob).
    import: Option<Import>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    name: Option<String>,
    public: bool,
}

#[derive(Debug, Default)]
struct Parsed {
    references: Vec<Reference>,
    /// Submodules declared `#[cfg(test)] mod x;`.
    test_only_children: Vec<String>,
    /// The file starts with `#![cfg(test)]`.
    test_only: bool,
}

fn parse(src: &str, module: &[String]) -> Parsed {
    let toks = tokenize(&strip(src));
    let text = |i: usize| toks.get(i).map_or("", |t| t.text.as_str());
    let mut parsed = Parsed::default();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let scope = || {
            let mut s = module.to_vec();
            s.extend(inline.iter().map(|(name, _)| name.clone()));
            s
        };
        match text(i) {
            "#" => {
                let inner = text(i + 1) == "!";
                let open = if inner { i + 2 } else { i + 1 };
                if text(open) != "[" {
                    i += 1;
                    continue;
                }
                let close = matching(&toks, open);
                if !is_cfg_test(&toks[open + 1..close]) {
                    i = close + 1;
                    continue;
                }
                if inner {
                    if inline.is_empty() {
                        parsed.test_only = true;
                        return parsed;
                    }
                    // The rest of this inline module is test-only.
                    i = skip_to_close(&toks, close + 1);
                    continue;
                }
                let mut j = close + 1;
                while text(j) == "#" && text(j + 1) == "[" {
                    j = matching(&toks, j + 1) + 1;
                }
                let k = skip_visibility(&toks, j);
                if text(k) == "mod" && text(k + 2) == ";" {
                    parsed.test_only_children.push(text(k + 1).to_owned());
                }
                i = end_of_item(&toks, j);
            }
            "mod" if text(i + 2) == "{" && is_ident(text(i + 1)) => {
                inline.push((text(i + 1).to_owned(), depth + 1));
                i += 1;
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            "use" => {
                let public = i > 0 && (text(i - 1) == "pub" || is_pub_restricted(&toks, i));
                let mut leaves = Vec::new();
                let end = use_tree(&toks, i + 1, Vec::new(), &mut leaves);
                let scope = scope();
                for (path, name, line) in leaves {
                    parsed.references.push(Reference {
                        scope: scope.clone(),
                        path,
                        line,
                        import: Some(Import { name, public }),
                    });
                }
                i = end;
            }
            t if is_ident(t) && text(i + 1) == "::" && (i == 0 || text(i - 1) != "::") => {
                let line = toks[i].line;
                let mut path = vec![t.to_owned()];
                let mut j = i + 1;
                while text(j) == "::" && is_ident(text(j + 1)) {
                    path.push(text(j + 1).to_owned());
                    j += 2;
                }
                parsed.references.push(Reference {
                    scope: scope(),
                    path,
                    line,
                    import: None,
                });
                i = j;
            }
            _ => i += 1,
        }
    }
    parsed
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The index of the bracket closing the one at `open`.
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "[" | "(" | "{" => depth += 1,
            "]" | ")" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// The index of the `}` closing the block `i` is in.
fn skip_to_close(toks: &[Token], i: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(i) {
        match t.text.as_str() {
            "{" => depth += 1,
            "}" if depth == 0 => return k,
            "}" => depth -= 1,
            _ => {}
        }
    }
    toks.len()
}

/// `cfg(test)` or `cfg(all(test, …))`: code only the crate's own tests see.
fn is_cfg_test(attr: &[Token]) -> bool {
    let t: Vec<&str> = attr.iter().map(|t| t.text.as_str()).collect();
    match t.as_slice() {
        ["cfg", "(", "test", ")"] => true,
        ["cfg", "(", "all", "(", rest @ ..] => {
            rest.contains(&"test") && !rest.contains(&"not") && !rest.contains(&"any")
        }
        _ => false,
    }
}

fn skip_visibility(toks: &[Token], i: usize) -> usize {
    if toks.get(i).is_some_and(|t| t.text == "pub") {
        if toks.get(i + 1).is_some_and(|t| t.text == "(") {
            return matching(toks, i + 1) + 1;
        }
        return i + 1;
    }
    i
}

/// Whether `use` at `i` follows `pub(…)`.
fn is_pub_restricted(toks: &[Token], i: usize) -> bool {
    if toks[i - 1].text != ")" {
        return false;
    }
    let mut depth = 0usize;
    for k in (0..i).rev() {
        match toks[k].text.as_str() {
            ")" => depth += 1,
            "(" => {
                depth -= 1;
                if depth == 0 {
                    return k > 0 && toks[k - 1].text == "pub";
                }
            }
            _ => {}
        }
    }
    false
}

/// The end of the item starting at `i`: after its `;` or its outer `}`.
fn end_of_item(toks: &[Token], i: usize) -> usize {
    let mut depth = 0isize;
    for (k, t) in toks.iter().enumerate().skip(i) {
        match t.text.as_str() {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => {
                depth -= 1;
                if depth == 0 && t.text == "}" {
                    return k + 1;
                }
            }
            ";" if depth == 0 => return k + 1,
            _ => {}
        }
    }
    toks.len()
}

/// Flattens the use tree at `i` (after `use`) into `(path, name, line)`
/// leaves; returns the index after the tree.
fn use_tree(
    toks: &[Token],
    mut i: usize,
    mut path: Vec<String>,
    leaves: &mut Vec<(Vec<String>, Option<String>, usize)>,
) -> usize {
    let text = |i: usize| toks.get(i).map_or("", |t| t.text.as_str());
    if text(i) == "::" {
        // `use ::name` is always another crate.
        path.push("::".into());
        i += 1;
    }
    loop {
        match text(i) {
            "{" => {
                i += 1;
                while i < toks.len() && text(i) != "}" {
                    i = use_tree(toks, i, path.clone(), leaves);
                    if text(i) == "," {
                        i += 1;
                    }
                }
                return skip_use_end(toks, i + 1);
            }
            "*" => {
                path.push("*".into());
                leaves.push((path, None, toks[i].line));
                return skip_use_end(toks, i + 1);
            }
            t if is_ident(t) => {
                let line = toks[i].line;
                path.push(t.to_owned());
                i += 1;
                if text(i) == "::" {
                    i += 1;
                    continue;
                }
                if path.len() > 1 && path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                let mut name = path.last().cloned();
                if text(i) == "as" {
                    name = Some(text(i + 1).to_owned()).filter(|n| n != "_");
                    i += 2;
                }
                leaves.push((path, name, line));
                return skip_use_end(toks, i);
            }
            _ => return skip_use_end(toks, i),
        }
    }
}

/// Past the `;` that ends a `use` item, if `i` is at it.
fn skip_use_end(toks: &[Token], i: usize) -> usize {
    if toks.get(i).is_some_and(|t| t.text == ";") {
        i + 1
    } else {
        i
    }
}

// ---------------------------------------------------------------------------
// The crate: files, modules, re-exports, and the graph between modules.

struct SourceFile {
    /// Relative to the crate, e.g. `src/trace/light.rs`.
    name: String,
    module: Vec<String>,
    parsed: Parsed,
}

struct Crate {
    files: Vec<SourceFile>,
    modules: BTreeSet<Vec<String>>,
}

/// The module of a file under `src/`: `a/mod.rs` and `a.rs` are `a`,
/// `a/b.rs` is `a::b`, `lib.rs` is the crate root (empty).
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
            parts.push(stem.to_owned());
        }
    }
    parts
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut paths = Vec::new();
        collect_rs(src, &mut paths);
        paths.sort();
        let root = src.parent().unwrap_or(src);
        let files: Vec<SourceFile> = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
                let module = module_of(p.strip_prefix(src).unwrap());
                SourceFile {
                    name: p
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                    parsed: parse(&text, &module),
                    module,
                }
            })
            .collect();
        Self::from_files(files)
    }

    /// The crate of `files`, without those only the crate's tests compile.
    fn from_files(files: Vec<SourceFile>) -> Self {
        let test_only: Vec<Vec<String>> = files
            .iter()
            .flat_map(|f| {
                let (module, parsed) = (&f.module, &f.parsed);
                let children = parsed.test_only_children.iter().map(move |child| {
                    let mut m = module.clone();
                    m.push(child.clone());
                    m
                });
                parsed
                    .test_only
                    .then(|| module.clone())
                    .into_iter()
                    .chain(children)
            })
            .collect();
        let files: Vec<SourceFile> = files
            .into_iter()
            .filter(|f| !test_only.iter().any(|t| f.module.starts_with(t)))
            .collect();
        let modules = files.iter().map(|f| f.module.clone()).collect();
        Self { files, modules }
    }

    /// The module `path`, written in `scope`, names: the innermost module
    /// reached by following submodules and facade re-exports; `None` when
    /// the path does not start in this crate.
    fn resolve(&self, scope: &[String], path: &[String], hops: usize) -> Option<Vec<String>> {
        let first = path.first()?;
        let (mut cur, rest) = match first.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (scope.to_vec(), &path[1..]),
            "super" => {
                let mut cur = scope.to_vec();
                let supers = path.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    cur.pop()?;
                }
                (cur, &path[supers..])
            }
            _ if self.modules.contains(&child(scope, first)) => (scope.to_vec(), path),
            _ => return None,
        };
        for seg in rest {
            let next = child(&cur, seg);
            if self.modules.contains(&next) {
                cur = next;
            } else if let Some(target) = self.facade_reexport(&cur, seg, hops) {
                cur = target;
            } else {
                break;
            }
        }
        Some(cur)
    }

    /// The module behind `name` when `module` is the crate root or a module
    /// re-exporting from its own submodules.
    fn facade_reexport(&self, module: &[String], name: &str, hops: usize) -> Option<Vec<String>> {
        if hops > 8 {
            return None;
        }
        let file = self.files.iter().find(|f| f.module == module)?;
        file.parsed.references.iter().find_map(|r| {
            let import = r.import.as_ref()?;
            if !import.public || import.name.as_deref() != Some(name) || r.scope != module {
                return None;
            }
            let target = self.resolve(&r.scope, &r.path, hops + 1)?;
            (module.is_empty() || target.starts_with(module)).then_some(target)
        })
    }

    /// Every dependency between two modules of the crate, `from` being the
    /// file's module (inline modules belong to their file).
    fn edges(&self) -> Vec<(Vec<String>, Vec<String>, Site)> {
        let mut out = Vec::new();
        for f in &self.files {
            if f.module.is_empty() {
                continue; // the facade
            }
            for r in &f.parsed.references {
                let Some(to) = self.resolve(&r.scope, &r.path, 0) else {
                    continue;
                };
                let facade =
                    r.import.as_ref().is_some_and(|i| i.public) && to.starts_with(&f.module);
                if facade || to == f.module || to.is_empty() {
                    continue;
                }
                let written = r.path.join("::");
                out.push((
                    f.module.clone(),
                    to,
                    Site {
                        file: f.name.clone(),
                        line: r.line,
                        path: if r.import.is_some() {
                            format!("use {written}")
                        } else {
                            written
                        },
                    },
                ));
            }
        }
        out
    }
}

fn child(module: &[String], name: &str) -> Vec<String> {
    let mut m = module.to_vec();
    m.push(name.to_owned());
    m
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

struct Graph {
    krate: Crate,
    edges: Vec<(Vec<String>, Vec<String>, Site)>,
}

impl Graph {
    fn of_crate() -> Self {
        Self::new(Crate::read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        ))
    }

    fn new(krate: Crate) -> Self {
        let edges = krate.edges();
        Self { krate, edges }
    }

    fn top_level_modules(&self) -> BTreeSet<&String> {
        self.krate
            .modules
            .iter()
            .filter_map(|m| m.first())
            .collect()
    }

    /// Edges between top-level modules.
    fn top_level(&self) -> Edges {
        self.collapsed(&[])
    }

    /// Edges between the children of `dir` (and `dir` itself, its
    /// `mod.rs`), each module counted as the child of `dir` it is in.
    fn collapsed(&self, dir: &[String]) -> Edges {
        let node = |m: &[String]| -> Option<String> {
            if !m.starts_with(dir) {
                return None;
            }
            Some(m[..(dir.len() + 1).min(m.len())].join("::"))
        };
        let mut edges = Edges::new();
        for (from, to, site) in &self.edges {
            if let (Some(a), Some(b)) = (node(from), node(to))
                && a != b
                && !a.is_empty()
                && !b.is_empty()
            {
                let sites = edges.entry((a, b)).or_default();
                // One site per line: `use a::{B, C}` is one place.
                if !sites
                    .iter()
                    .any(|s| s.file == site.file && s.line == site.line)
                {
                    sites.push(site.clone());
                }
            }
        }
        edges
    }

    /// Directory modules (with submodules), as `(label, edges)`; the crate
    /// root first.
    fn scopes(&self) -> Vec<(String, Edges)> {
        let dirs: BTreeSet<Vec<String>> = self
            .krate
            .modules
            .iter()
            .filter(|m| m.len() > 1)
            .map(|m| m[..m.len() - 1].to_vec())
            .collect();
        let mut out = vec![("the top-level modules".to_owned(), self.top_level())];
        for dir in dirs {
            out.push((
                format!("the submodules of {}", dir.join("::")),
                self.collapsed(&dir),
            ));
        }
        out
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (scope, edges) in self.scopes() {
            let _ = writeln!(out, "{scope}:");
            let mut from_prev = "";
            for ((from, to), sites) in &edges {
                if from != from_prev {
                    let layer = rank(from)
                        .filter(|_| !from.contains("::"))
                        .map_or(String::new(), |r| format!(" (layer {r})"));
                    let _ = writeln!(out, "  {from}{layer}");
                    from_prev = from;
                }
                let s = &sites[0];
                let _ = writeln!(
                    out,
                    "    -> {to}   {}:{} {}{}",
                    s.file,
                    s.line,
                    s.path,
                    if sites.len() > 1 {
                        format!(" (+{} more)", sites.len() - 1)
                    } else {
                        String::new()
                    }
                );
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Cycles.

/// The strongly connected components of `edges` with more than one node.
fn tangles(edges: &Edges) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let succ = |n: &String| -> Vec<&String> {
        edges
            .keys()
            .filter(|(a, _)| a == n)
            .map(|(_, b)| b)
            .collect()
    };
    // Kosaraju: order by finish time, then walk the reversed graph.
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for &start in &nodes {
        if !seen.insert(start) {
            continue;
        }
        let mut stack = vec![(start, succ(start).into_iter())];
        while let Some((node, it)) = stack.last_mut() {
            if let Some(next) = it.next() {
                if seen.insert(next) {
                    let s = succ(next).into_iter();
                    stack.push((next, s));
                }
            } else {
                order.push(*node);
                stack.pop();
            }
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for &start in order.iter().rev() {
        if !assigned.insert(start) {
            continue;
        }
        let mut component = BTreeSet::from([start.clone()]);
        let mut queue = vec![start];
        while let Some(n) = queue.pop() {
            for (a, b) in edges.keys() {
                if b == n && assigned.insert(a) {
                    component.insert(a.clone());
                    queue.push(a);
                }
            }
        }
        if component.len() > 1 {
            out.push(component);
        }
    }
    out
}

/// Cycles covering every edge that lies on a cycle: for each such edge
/// `a -> b`, `a -> b` then the shortest way back from `b` to `a`. Each cycle
/// starts and ends at its smallest node: `["a", "b", "a"]`.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for component in tangles(edges) {
        let inside = |(a, b): &(String, String)| component.contains(a) && component.contains(b);
        for (a, b) in edges.keys().filter(|k| inside(k)) {
            let Some(back) = shortest_path(edges, &component, b, a) else {
                continue;
            };
            let mut cycle = vec![a.clone()];
            cycle.extend(back);
            // Rotate to start at the smallest node.
            cycle.pop();
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| *n)
                .map_or(0, |(i, _)| i);
            cycle.rotate_left(min);
            cycle.push(cycle[0].clone());
            if !out.contains(&cycle) {
                out.push(cycle);
            }
        }
    }
    out.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    out
}

/// The shortest path from `from` to `to` inside `within`, both ends included.
fn shortest_path(
    edges: &Edges,
    within: &BTreeSet<String>,
    from: &String,
    to: &String,
) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(n) = queue.pop_front() {
        if n == to {
            let mut path = vec![n.clone()];
            let mut cur = n;
            while let Some(p) = prev.get(cur) {
                path.push((*p).clone());
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for (a, b) in edges.keys() {
            if a == n && within.contains(b) && seen.insert(b) {
                prev.insert(b, a);
                queue.push_back(b);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// The checker's own tests, on small inline sources.

fn m(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split("::").map(str::to_owned).collect()
    }
}

fn paths(src: &str, module: &str) -> Vec<String> {
    parse(src, &m(module))
        .references
        .iter()
        .map(|r| r.path.join("::"))
        .collect()
}

/// A crate from `(file under src/, source)` pairs.
fn krate(files: &[(&str, &str)]) -> Graph {
    let files = files
        .iter()
        .map(|(name, src)| {
            let module = module_of(Path::new(name));
            SourceFile {
                name: format!("src/{name}"),
                parsed: parse(src, &module),
                module,
            }
        })
        .collect();
    Graph::new(Crate::from_files(files))
}

fn edge_list(edges: &Edges) -> Vec<String> {
    edges.keys().map(|(a, b)| format!("{a} -> {b}")).collect()
}

#[test]
fn checker_flattens_nested_use_trees() {
    assert_eq!(
        paths(
            "use crate::{a::{b, c as d, self}, e::*};\npub(crate) use super::f;\nuse std::{io, fmt};",
            "x"
        ),
        [
            "crate::a::b",
            "crate::a::c",
            "crate::a",
            "crate::e::*",
            "super::f",
            "std::io",
            "std::fmt"
        ]
    );
    let parsed = parse("pub(crate) use crate::a::B as C;\nuse crate::d;", &m("x"));
    let imports: Vec<_> = parsed
        .references
        .iter()
        .map(|r| r.import.clone().unwrap())
        .collect();
    assert_eq!(
        imports,
        [
            Import {
                name: Some("C".into()),
                public: true
            },
            Import {
                name: Some("d".into()),
                public: false
            }
        ]
    );
}

#[test]
fn checker_finds_inline_paths_and_their_lines() {
    let parsed = parse(
        "fn f() {\n    let x = crate::a::b::C::new();\n    super::super::g::<u8>();\n    Vec::<crate::h::I>::new();\n}",
        &m("p::q"),
    );
    let found: Vec<(String, usize)> = parsed
        .references
        .iter()
        .filter(|r| ["crate", "super"].contains(&r.path[0].as_str()))
        .map(|r| (r.path.join("::"), r.line))
        .collect();
    assert_eq!(
        found,
        [
            ("crate::a::b::C::new".to_owned(), 2),
            ("super::super::g".to_owned(), 3),
            ("crate::h::I".to_owned(), 4)
        ]
    );
}

#[test]
fn checker_ignores_comments_strings_and_char_literals() {
    let src = r####"
//! See [`crate::doc_a`].
/// Uses `crate::doc_b`.
/* crate::block /* nested crate::inner */ still comment crate::c */
const S: &str = "crate::string \" crate::escaped";
const R: &str = r#"crate::raw " crate::raw_quote"#;
const B: &[u8] = br##"crate::bytes"##;
const Q: char = '"'; const E: char = '\''; fn l<'a>(x: &'a str) -> &'a str { x }
const T: () = crate::real::X;
"####;
    assert_eq!(paths(src, "x"), ["crate::real::X"]);
    // Lines survive the blanking.
    assert_eq!(parse(src, &m("x")).references[0].line, 9);
}

#[test]
fn checker_skips_cfg_test_items_and_test_only_files() {
    let src = "
use crate::a;
#[cfg(test)]
mod tests { use crate::b; fn f() { crate::c::d(); } }
#[cfg(all(test, feature = \"x\"))]
#[allow(unused)]
fn g() -> [u8; 2] { crate::e::f() }
#[cfg(test)]
pub(crate) mod test_util;
#[cfg(feature = \"testing\")]
pub mod testing;
fn h() { crate::i::j(); }
";
    let parsed = parse(src, &[]);
    let found: Vec<String> = parsed
        .references
        .iter()
        .map(|r| r.path.join("::"))
        .collect();
    assert_eq!(found, ["crate::a", "crate::i::j"]);
    assert_eq!(parsed.test_only_children, ["test_util"]);
    assert!(parse("#![cfg(test)]\nuse crate::a;", &[]).test_only);
}

#[test]
fn checker_maps_files_to_modules() {
    assert_eq!(module_of(Path::new("lib.rs")), m(""));
    assert_eq!(module_of(Path::new("config.rs")), m("config"));
    assert_eq!(module_of(Path::new("trace/mod.rs")), m("trace"));
    assert_eq!(module_of(Path::new("trace/light.rs")), m("trace::light"));
    assert_eq!(module_of(Path::new("a/b/mod.rs")), m("a::b"));
}

#[test]
fn checker_resolves_super_self_children_and_facade_reexports() {
    let g = krate(&[
        (
            "lib.rs",
            "mod a; mod b; pub use b::{Thing, inner::Deep as D};\n#[cfg(test)] mod test_util;",
        ),
        (
            "a/mod.rs",
            "mod x; mod y; pub use x::Shared;\nfn f() { y::g(); }",
        ),
        ("a/x.rs", "pub struct Shared; use super::y::Z;"),
        (
            "a/y.rs",
            "pub struct Z; fn h() { super::Shared::new(); self::k(); }",
        ),
        ("b/mod.rs", "pub struct Thing; pub mod inner;"),
        (
            "b/inner.rs",
            "pub struct Deep; fn f() -> crate::D { todo!() }",
        ),
        (
            "c.rs",
            "use crate::{Thing, D}; mod nested { fn f() { super::super::a::x::Shared; } }",
        ),
        ("test_util.rs", "use crate::c;"),
    ]);
    let edges: Vec<String> = g
        .edges
        .iter()
        .map(|(a, b, s)| format!("{} -> {} @{}", a.join("::"), b.join("::"), s.line))
        .collect();
    assert_eq!(
        edges,
        [
            // `y::g` in a's mod.rs names its submodule; `pub use x::Shared` is a facade.
            "a -> a::y @2",
            // `super::Shared` goes through a's re-export to where it is defined.
            "a::x -> a::y @1",
            "a::y -> a::x @1",
            // `crate::D` is the crate root's re-export of b::inner::Deep.
            "c -> b @1",
            "c -> b::inner @1",
            // `super::super` from the inline module `c::nested` is the crate root.
            "c -> a::x @1",
        ]
    );
    assert_eq!(edge_list(&g.top_level()), ["c -> a", "c -> b"]);
    assert_eq!(
        edge_list(&g.collapsed(&m("a"))),
        ["a -> a::y", "a::x -> a::y", "a::y -> a::x"]
    );
}

#[test]
fn checker_reports_each_cycle_once_from_its_smallest_module() {
    let g = krate(&[
        ("lib.rs", "mod a; mod b; mod c; mod d;"),
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "fn f() { crate::c::g(); crate::a::h(); }"),
        ("c.rs", "use crate::a;"),
        ("d.rs", "use crate::a;"),
    ]);
    let edges = g.top_level();
    assert_eq!(cycles(&edges), [m("a::b::a"), m("a::b::c::a")]);
    let site = &edges[&("b".to_owned(), "c".to_owned())][0];
    assert_eq!(
        (site.file.as_str(), site.line, site.path.as_str()),
        ("src/b.rs", 1, "crate::c::g")
    );
    assert!(cycles(&krate(&[("a.rs", "use crate::b;"), ("b.rs", "")]).top_level()).is_empty());
}
