//! The Kubernetes manifests (deploy/k8s) give the binary only what it takes, and each node its
//! own key only.
//!
//! Every `oracle` command a container runs — its `args` (the image's entrypoint is `oracle`) or
//! the `oracle …` lines of the script it runs — is a command of the binary with flags it has;
//! every `ORACLE_*` variable a container gets (its `env`, the ConfigMaps of its `envFrom`, those
//! its script sets) is read by every `oracle` command it runs; and every `ORACLE_*` name in the
//! folder is a variable of the binary. The binary's side is its clap definition (`Cli`), hidden
//! (retired) names left out. The files are read as Kustomize's inputs, not rendered: kubectl
//! may be absent where the tests run (scripts/k8s-check.sh renders and validates the overlays).
//!
//! And the scripts those containers run do their part against a real database: the setup
//! Job's makes every address of members.txt a member with a role of its own, a pod's init
//! container picks that pod's files alone, and a member logs in as its own role.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use price_oracle::config::Cli;
use price_oracle::testkit::{TestDb, server_url};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::oracle::{self, stderr, stdout};

/// The manifests' folder, relative to the repository.
const MANIFESTS: &str = "deploy/k8s";

/// The image name the manifests give the project's image (an overlay sets its tag).
const IMAGE: &str = "price-oracle";

#[test]
fn every_flag_and_variable_in_the_manifests_is_the_binarys() {
    let files = manifests();
    assert!(
        files.keys().any(|path| path.ends_with("run-member.sh")),
        "{MANIFESTS} read: {:?}",
        files.keys()
    );
    let binary = Binary::read();
    let (problems, checked) = check(&files, &binary);
    assert!(
        problems.is_empty(),
        "deploy/k8s gives the binary what it does not take (see `oracle <command> --help`):\n{}",
        problems.join("\n")
    );
    // Read as they are meant: else nothing would have been checked.
    for command in ["run", "bootstrap", "migrate", "signers add", "db-role"] {
        assert!(
            checked.contains(command),
            "no container runs oracle {command}: {checked:?}"
        );
    }
}

#[test]
fn a_flag_or_variable_the_binary_does_not_take_is_caught() {
    let files = BTreeMap::from([
        (
            PathBuf::from("base/kustomization.yaml"),
            "configMapGenerator:\n  - name: node\n    envs: [node.env]\n    \
             literals: [ORACLE_NOT_A_FLAG=1]\n"
                .to_owned(),
        ),
        (
            PathBuf::from("base/node.env"),
            "# ORACLE_<FLAG> settings\nORACLE_HEARTBEAT=1m\nORACLE_ROLE=x\n".to_owned(),
        ),
        (
            PathBuf::from("base/node.yaml"),
            "kind: StatefulSet\nmetadata: {name: node}\nspec:\n  template:\n    spec:\n      \
             containers:\n        - name: node\n          image: price-oracle\n          \
             args: [run, --heartbeat, 1m, --no-such-flag]\n          \
             envFrom: [{configMapRef: {name: node}}, {configMapRef: {name: nope}}]\n      \
             initContainers:\n        - name: init\n          image: price-oracle\n          \
             command: [/bin/sh, /scripts/start.sh]\n          env: [{name: ORACLE_KEY_DIR, value: /k}]\n"
                .to_owned(),
        ),
        (
            PathBuf::from("base/scripts/start.sh"),
            "set -eu\nORACLE_SINCE=1h oracle verify --since 1h\n\
             oracle signers add \"$(echo \"$a\" | tr - _)\" --label x \\\n  --lable y\n\
             exec oracle signers\n"
                .to_owned(),
        ),
    ]);
    let (problems, _) = check(&files, &Binary::read());
    let expected = [
        "base/kustomization.yaml: ORACLE_NOT_A_FLAG is not a variable of the binary",
        "base/node.yaml: node/init gives ORACLE_KEY_DIR to oracle verify, which does not read it",
        "base/node.yaml: node/init gives ORACLE_SINCE to oracle signers add, which does not read it",
        "base/node.yaml: node/init: oracle signers add --lable: no such flag",
        "base/node.yaml: node/init: oracle signers: a command needs one of its subcommands \
         (add, list, remove)",
        "base/node.yaml: node/node envFrom ConfigMap nope, which no file makes",
        "base/node.yaml: node/node gives ORACLE_NOT_A_FLAG to oracle run, which does not read it",
        "base/node.yaml: node/node gives ORACLE_ROLE to oracle run, which does not read it",
        "base/node.yaml: node/node: oracle run --no-such-flag: no such flag",
    ];
    assert_eq!(problems, expected);
}

/// The pod of every node (a StatefulSet's: bootstrap or member) mounts its own key only: the
/// Secrets that hold every node's keys are mounted in its init container alone, and the node
/// reads its key from an in-memory volume, read-only. Every container of the image runs as its
/// non-root user with a read-only root file system and no privileges. Members start all at once
/// (each is ready only once it has peers).
#[test]
fn every_node_mounts_its_own_key_only_and_runs_unprivileged() {
    let files = manifests();
    let mut nodes = Vec::new();
    for (path, doc) in yaml_docs(&files) {
        let Some(pod) = full_pod_spec(&doc) else {
            continue;
        };
        let workload = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = format!("{}: {workload}", path.display());
        if pod["containers"][0]["image"].as_str() != Some(IMAGE) {
            continue;
        }
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{at}");
        assert_eq!(
            security["runAsUser"].as_i64(),
            Some(10001),
            "{at}: the image's oracle"
        );
        let volumes: BTreeMap<&str, &Yaml> = list(&pod["volumes"])
            .iter()
            .map(|volume| (volume["name"].as_str().unwrap_or_default(), volume))
            .collect();
        for (init, container) in pod_containers(pod) {
            let name = container["name"].as_str().unwrap_or_default();
            let at = format!("{at}/{name}");
            let hardened = &container["securityContext"];
            assert_eq!(
                hardened["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{at}"
            );
            assert_eq!(
                hardened["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{at}"
            );
            assert_eq!(strings(&hardened["capabilities"]["drop"]), ["ALL"], "{at}");
            // The setup Job is no node: it reads the members' database passwords.
            if init || doc["kind"].as_str() != Some("StatefulSet") {
                continue;
            }
            for mount in list(&container["volumeMounts"]) {
                let volume = volumes[mount["name"].as_str().unwrap()];
                assert!(
                    volume["secret"].is_badvalue() && volume["projected"].is_badvalue(),
                    "{at} mounts a Secret: only its init container may, to pick its own key"
                );
                if mount["mountPath"].as_str() == Some("/keys") {
                    assert_eq!(
                        volume["emptyDir"]["medium"].as_str(),
                        Some("Memory"),
                        "{at}"
                    );
                    assert_eq!(mount["readOnly"].as_bool(), Some(true), "{at}");
                    nodes.push(workload.clone());
                }
            }
        }
        if workload == "oracle-member" {
            assert_eq!(
                doc["spec"]["podManagementPolicy"].as_str(),
                Some("Parallel")
            );
        }
    }
    nodes.sort();
    assert_eq!(nodes, ["oracle-bootstrap", "oracle-member"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scripts_make_members_that_log_in_as_their_own_role() {
    let db = TestDb::create("k8s").await;
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(MANIFESTS)
        .join("base/scripts");
    // Roles belong to the server, not the test's database: pod names of this run alone.
    let prefix = format!("t{:08x}", rand::random::<u32>());
    let pods = [0, 1].map(|n| format!("{prefix}-member-{n}"));
    for folder in ["keys", "db", "pod"] {
        fs::create_dir(at.join(folder)).unwrap();
    }
    let mut members = String::from("# the members\n\n");
    for pod in &pods {
        let password = format!("keys/{pod}.password");
        fs::write(at.join(&password), "key password\n").unwrap();
        let made = oracle::run(
            at,
            &[
                "keygen",
                "--name",
                pod,
                "--key-dir",
                "keys",
                "--keystore",
                "--password-file",
                &password,
            ],
        );
        assert!(made.status.success(), "{}", stderr(&made));
        let address = stdout(&made)
            .lines()
            .find_map(|line| Some(line.strip_prefix("address")?.trim().to_owned()))
            .unwrap();
        members.push_str(&format!("{address}  # {pod}\n"));
        fs::write(at.join("db").join(pod), format!("{prefix}db\n")).unwrap();
    }
    fs::write(at.join("members.txt"), &members).unwrap();

    // The setup Job.
    let setup = oracle::script(at, &scripts.join("setup.sh"))
        .env("MEMBERS", "members.txt")
        .env("DB_PASSWORDS", "db")
        .env("ORACLE_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let listed = stdout(&setup);
    assert!(setup.status.success(), "{listed}{}", stderr(&setup));
    assert!(listed.contains("2 members"), "{listed}");

    // A pod's init container: a pod without files is told which one is missing; a member's
    // gets its own three, which only it may read.
    let pick = |pod: &str, pairs: &[String]| {
        oracle::script(at, &scripts.join("pick-key.sh"))
            .env("POD_NAME", pod)
            .args(pairs)
            .output()
            .unwrap()
    };
    let stranger = pick("nobody", &["keys/nobody.json=pod/nobody.json".to_owned()]);
    assert!(!stranger.status.success());
    assert!(
        stderr(&stranger).contains("no nobody.json"),
        "{}",
        stderr(&stranger)
    );
    let pod = &pods[0];
    let picked = pick(
        pod,
        &[
            format!("keys/{pod}.json=pod/{pod}.json"),
            format!("keys/{pod}.password=pod/key-password"),
            format!("db/{pod}=pod/db-password"),
        ],
    );
    assert!(picked.status.success(), "{}", stderr(&picked));
    let files: Vec<fs::DirEntry> = fs::read_dir(at.join("pod"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(files.len(), 3, "its own three files only");
    for file in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400, "{:?}", file.file_name());
    }

    // The member: logs in as its own role, at the URL its script puts together.
    let server = reqwest::Url::parse(&db.url).unwrap();
    let hosts = format!(
        "{}:{}",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432)
    );
    let mut member = oracle::script(at, &scripts.join("run-member.sh"))
        .env("POD_NAME", pod)
        .env("ORACLE_NAME", pod)
        .env("ORACLE_KEY_DIR", "pod")
        .env("ORACLE_PASSWORD_FILE", "pod/key-password")
        .env("ORACLE_MIGRATE", "false")
        .env("ORACLE_MIN_PEERS", "0")
        .env("ORACLE_LISTEN", "/ip4/127.0.0.1/tcp/0")
        // Nothing answers there: the test is about the database, not prices.
        .env("ORACLE_SOURCE_BASE_URL", "http://127.0.0.1:9")
        .env("DATABASE_HOSTS", &hosts)
        .env("DATABASE_NAME", &db.name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let role = pod.replace('-', "_");
    let admin = db.connect().await;
    let sessions = format!(
        "SELECT 1 FROM pg_stat_activity WHERE datname = '{}' AND usename = '{role}'",
        db.name
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut logged_in = false;
    while !logged_in && std::time::Instant::now() < deadline {
        let found = admin
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                sessions.clone(),
            ))
            .await
            .unwrap();
        logged_in = found.is_some();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The shell exec'd the node: this stops the node itself.
    member.kill().unwrap();
    member.wait().unwrap();
    let _ = admin.close().await;
    drop_roles(&db, &pods).await;
    assert!(logged_in, "{pod} did not log in as {role} within 30 s");
}

/// Drops the roles setup.sh made for `pods`, which would outlive the test's database.
async fn drop_roles(db: &TestDb, pods: &[String]) {
    let admin = db.connect().await;
    let server = Database::connect(server_url()).await.unwrap();
    for role in pods.iter().map(|pod| pod.replace('-', "_")) {
        let owned = format!("DROP OWNED BY \"{role}\"");
        admin.execute_unprepared(&owned).await.unwrap();
        let dropped = format!("DROP ROLE \"{role}\"");
        server.execute_unprepared(&dropped).await.unwrap();
    }
    let _ = admin.close().await;
    let _ = server.close().await;
}

/// Every file under deploy/k8s, by its path below it.
fn manifests() -> BTreeMap<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(MANIFESTS);
    let mut files = BTreeMap::new();
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let text = fs::read_to_string(&path).unwrap();
                files.insert(path.strip_prefix(&root).unwrap().to_path_buf(), text);
            }
        }
    }
    files
}

/// What each command of the binary reads: its flags (without `--`) and its variables, by its
/// path of subcommands (`["signers", "add"]`); commands with subcommands have their names.
struct Binary {
    commands: BTreeMap<Vec<String>, Reads>,
}

#[derive(Default)]
struct Reads {
    flags: BTreeSet<String>,
    vars: BTreeSet<String>,
    subcommands: Vec<String>,
}

impl Binary {
    fn read() -> Self {
        let mut top = Cli::command();
        // Propagates the global flags (--log-level, …) to every subcommand.
        top.build();
        let mut commands = BTreeMap::new();
        let mut todo = vec![(Vec::new(), &top)];
        while let Some((path, command)) = todo.pop() {
            let mut reads = Reads::default();
            for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    reads.flags.insert(long.to_owned());
                }
                if let Some(var) = arg.get_env() {
                    reads.vars.insert(var.to_string_lossy().into_owned());
                }
            }
            for sub in command
                .get_subcommands()
                .filter(|sub| sub.get_name() != "help")
            {
                reads.subcommands.push(sub.get_name().to_owned());
                todo.push((
                    [path.clone(), vec![sub.get_name().to_owned()]].concat(),
                    sub,
                ));
            }
            reads.subcommands.sort();
            commands.insert(path, reads);
        }
        Self { commands }
    }

    fn knows_var(&self, var: &str) -> bool {
        self.commands.values().any(|reads| reads.vars.contains(var))
    }
}

/// An `oracle …` command line a container runs, as its words.
struct Invocation(Vec<String>);

impl Invocation {
    /// Its subcommands' path and its flags (`--name`, `--name=value`: `name`), as far as the
    /// binary knows the subcommands.
    fn parse(&self, binary: &Binary) -> (Vec<String>, Vec<String>) {
        let mut path = Vec::new();
        let mut flags = Vec::new();
        for word in &self.0 {
            let word = word.trim_matches(['"', '\'']);
            if let Some(flag) = word.strip_prefix("--") {
                flags.push(flag.split('=').next().unwrap_or_default().to_owned());
            } else if binary.commands[&path]
                .subcommands
                .iter()
                .any(|sub| sub == word)
            {
                path.push(word.to_owned());
            }
        }
        (path, flags)
    }
}

/// Every problem with what `files` (deploy/k8s's, by path) give the binary, and the commands
/// they run (`signers add`).
fn check(files: &BTreeMap<PathBuf, String>, binary: &Binary) -> (Vec<String>, BTreeSet<String>) {
    let mut problems = BTreeSet::new();
    for (path, text) in files {
        for var in oracle_vars(text) {
            if !binary.knows_var(&var) {
                problems.insert(format!(
                    "{}: {var} is not a variable of the binary",
                    path.display()
                ));
            }
        }
    }
    let config_maps = config_maps(files);
    let mut checked = BTreeSet::new();
    for container in containers(files) {
        let at = format!("{}: {}", container.file.display(), container.name);
        let (invocations, mut vars) = container.runs(files);
        for config_map in &container.env_from {
            match config_maps.get(config_map) {
                Some(keys) => vars.extend(keys.iter().cloned()),
                None => {
                    problems.insert(format!(
                        "{at} envFrom ConfigMap {config_map}, which no file makes"
                    ));
                }
            }
        }
        vars.extend(container.env.iter().cloned());
        vars.retain(|var| var.starts_with("ORACLE_"));
        if invocations.is_empty() {
            for var in &vars {
                problems.insert(format!("{at} gives {var} to no oracle command"));
            }
        }
        for invocation in invocations {
            let (path, flags) = invocation.parse(binary);
            let shown = path.join(" ");
            let reads = &binary.commands[&path];
            if !reads.subcommands.is_empty() {
                problems.insert(format!(
                    "{at}: oracle {shown}: a command needs one of its subcommands ({})",
                    reads.subcommands.join(", ")
                ));
                continue;
            }
            checked.insert(shown.clone());
            for flag in flags.iter().filter(|flag| !reads.flags.contains(*flag)) {
                problems.insert(format!("{at}: oracle {shown} --{flag}: no such flag"));
            }
            for var in vars.iter().filter(|var| !reads.vars.contains(*var)) {
                problems.insert(format!(
                    "{at} gives {var} to oracle {shown}, which does not read it"
                ));
            }
        }
    }
    (problems.into_iter().collect(), checked)
}

/// Every `ORACLE_…` name in `text` (not `ORACLE_*` or `ORACLE_<FLAG>`).
fn oracle_vars(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter_map(|word| word.strip_prefix("ORACLE_"))
        .map(|rest| rest.trim_end_matches('_'))
        .filter(|rest| !rest.is_empty())
        .map(|rest| format!("ORACLE_{rest}"))
        .collect()
}

/// Every document of every YAML file, with its file.
fn yaml_docs(files: &BTreeMap<PathBuf, String>) -> Vec<(&Path, Yaml)> {
    let mut docs = Vec::new();
    for (path, text) in files {
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let parsed = YamlLoader::load_from_str(text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            docs.extend(parsed.into_iter().map(|doc| (path.as_path(), doc)));
        }
    }
    docs
}

fn list(value: &Yaml) -> &[Yaml] {
    value.as_vec().map_or(&[], Vec::as_slice)
}

fn strings(value: &Yaml) -> Vec<String> {
    list(value)
        .iter()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// The keys of every ConfigMap the files make, by name: Kustomize's generators (`envs` files,
/// `literals`, `files`, in base and overlays alike: an overlay's merge adds keys) and ConfigMap
/// documents.
fn config_maps(files: &BTreeMap<PathBuf, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, doc) in yaml_docs(files) {
        if doc["kind"].as_str() == Some("ConfigMap") {
            let keys = maps
                .entry(
                    doc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
                .or_default();
            if let Some(data) = doc["data"].as_hash() {
                keys.extend(data.keys().filter_map(Yaml::as_str).map(str::to_owned));
            }
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        for generator in list(&doc["configMapGenerator"]) {
            let keys = maps
                .entry(generator["name"].as_str().unwrap_or_default().to_owned())
                .or_default();
            for env_file in strings(&generator["envs"]) {
                let text = files
                    .get(&dir.join(&env_file))
                    .unwrap_or_else(|| panic!("{}: no {env_file}", path.display()));
                let assignments = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with('#'))
                    .filter_map(|line| line.split_once('='));
                keys.extend(assignments.map(|(key, _)| key.trim().to_owned()));
            }
            for entry in [
                strings(&generator["literals"]),
                strings(&generator["files"]),
            ]
            .concat()
            {
                // `KEY=value`, `KEY=path`, or a path whose file name is the key.
                let key = entry.split('=').next().unwrap_or_default();
                keys.insert(key.rsplit('/').next().unwrap_or_default().to_owned());
            }
        }
    }
    maps
}

/// A container of a workload, as all files together say it (an overlay's patch adds to it).
#[derive(Default)]
struct Container {
    /// `workload/container`.
    name: String,
    /// The first file that names it.
    file: PathBuf,
    image: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env: BTreeSet<String>,
    env_from: BTreeSet<String>,
}

impl Container {
    /// The `oracle` commands it runs and the variables its script sets. The image's entrypoint
    /// is `oracle`: without a `command`, `args` is an `oracle` command line. A shell runs
    /// either a script given inline (`sh -c SCRIPT`) or a file, found by its name in `files`.
    fn runs(&self, files: &BTreeMap<PathBuf, String>) -> (Vec<Invocation>, BTreeSet<String>) {
        if self.image.as_deref().is_some_and(|image| image != IMAGE) {
            return (Vec::new(), BTreeSet::new());
        }
        let args = self.args.clone().unwrap_or_default();
        let Some(command) = &self.command else {
            return (vec![Invocation(args)], BTreeSet::new());
        };
        let words = [command.clone(), args].concat();
        let program = words
            .first()
            .map_or("", |word| word.rsplit('/').next().unwrap());
        let script = match (program, words.get(1)) {
            ("oracle", _) => return (vec![Invocation(words[1..].to_vec())], BTreeSet::new()),
            ("sh" | "bash", Some(option)) if option.starts_with('-') && option.contains('c') => {
                words.get(2).cloned().unwrap_or_default()
            }
            ("sh" | "bash", Some(file)) => {
                let name = file.rsplit('/').next().unwrap();
                let (_, text) = files
                    .iter()
                    .find(|(path, _)| path.file_name().is_some_and(|found| found == name))
                    .unwrap_or_else(|| panic!("{}: no script {file} here", self.name));
                text.clone()
            }
            _ => return (Vec::new(), BTreeSet::new()),
        };
        let invocations = shell_commands(&script)
            .into_iter()
            .filter_map(|words| {
                let mut words = words
                    .into_iter()
                    .skip_while(|word| word == "exec" || is_assignment(word));
                (words.next().as_deref() == Some("oracle")).then(|| Invocation(words.collect()))
            })
            .collect();
        (invocations, oracle_vars(&script))
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The simple commands of a shell script, each as its words as written (quotes kept): split at
/// unquoted `;`, `|`, `&`, parentheses and line ends (not `\`-continued ones); `$(…)` and
/// quotes stay inside their word, `#` at a word's start comments out the rest of the line.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let (mut command, mut word) = (Vec::new(), String::new());
    let (mut single, mut double, mut depth) = (false, false, 0);
    let mut chars = script.chars().peekable();
    let end_word = |command: &mut Vec<String>, word: &mut String| {
        if !word.is_empty() {
            command.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            _ if single => {
                single = c != '\'';
                word.push(c);
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(next) => word.extend([c, next]),
            },
            '\'' if !double => {
                single = true;
                word.push(c);
            }
            '"' => {
                double = !double;
                word.push(c);
            }
            '$' if chars.peek() == Some(&'(') => {
                depth += 1;
                word.push(c);
                word.push(chars.next().unwrap());
            }
            ')' if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            _ if depth > 0 || double => word.push(c),
            '#' if word.is_empty() => while chars.next_if(|next| *next != '\n').is_some() {},
            '\n' | ';' | '|' | '&' | '(' | ')' => {
                end_word(&mut command, &mut word);
                if !command.is_empty() {
                    commands.push(std::mem::take(&mut command));
                }
            }
            _ if c.is_whitespace() => end_word(&mut command, &mut word),
            _ => word.push(c),
        }
    }
    end_word(&mut command, &mut word);
    if !command.is_empty() {
        commands.push(command);
    }
    commands
}

/// A workload's pod spec when the document holds the whole of it (not an overlay's patch).
fn full_pod_spec(doc: &Yaml) -> Option<&Yaml> {
    let pod = &doc["spec"]["template"]["spec"];
    (!pod["volumes"].is_badvalue() && !pod["containers"].is_badvalue()).then_some(pod)
}

/// A pod's containers, init containers first, each with whether it is one.
fn pod_containers(pod: &Yaml) -> impl Iterator<Item = (bool, &Yaml)> {
    let init = list(&pod["initContainers"]).iter().map(|c| (true, c));
    init.chain(list(&pod["containers"]).iter().map(|c| (false, c)))
}

/// Every container of every workload, each merged over all the files that name it.
fn containers(files: &BTreeMap<PathBuf, String>) -> Vec<Container> {
    let mut found: BTreeMap<String, Container> = BTreeMap::new();
    for (path, doc) in yaml_docs(files) {
        let workload = doc["metadata"]["name"].as_str().unwrap_or_default();
        for (_, yaml) in pod_containers(&doc["spec"]["template"]["spec"]) {
            let name = format!("{workload}/{}", yaml["name"].as_str().unwrap_or_default());
            let container = found.entry(name.clone()).or_insert_with(|| Container {
                name,
                file: path.to_path_buf(),
                ..Container::default()
            });
            let words = |key: &str| (!yaml[key].is_badvalue()).then(|| strings(&yaml[key]));
            container.image = container
                .image
                .take()
                .or(yaml["image"].as_str().map(str::to_owned));
            container.command = container.command.take().or(words("command"));
            container.args = container.args.take().or(words("args"));
            for var in list(&yaml["env"]) {
                container
                    .env
                    .extend(var["name"].as_str().map(str::to_owned));
            }
            for source in list(&yaml["envFrom"]) {
                let config_map = source["configMapRef"]["name"].as_str();
                container.env_from.extend(config_map.map(str::to_owned));
            }
        }
    }
    found.into_values().collect()
}

#[test]
fn shell_commands_are_split_as_the_shell_splits_them() {
    let script = "set -eu # options\nx=$(cat f); ORACLE_A=\"a b\" exec oracle run \\\n  --name n\n\
                  oracle db-role --role \"$(echo \"$n\" | tr - _)\" --node 'a;b' | tail\n\
                  case $a in '' | '#'*) continue ;; esac\n";
    let words = shell_commands(script);
    let expected: [&[&str]; 9] = [
        &["set", "-eu"],
        &["x=$(cat f)"],
        &["ORACLE_A=\"a b\"", "exec", "oracle", "run", "--name", "n"],
        &[
            "oracle",
            "db-role",
            "--role",
            "\"$(echo \"$n\" | tr - _)\"",
            "--node",
            "'a;b'",
        ],
        &["tail"],
        &["case", "$a", "in", "''"],
        &["'#'*"],
        &["continue"],
        &["esac"],
    ];
    assert_eq!(words, expected);
}
