//! The deployment files parse and say what the README promises. Docker itself may be absent
//! where the tests run, so the files are checked as YAML structures.

use std::path::Path;

use clap::Parser;
use price_oracle::config::Cli;

use yaml_rust2::{Yaml, YamlLoader};

fn load(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
    assert_eq!(docs.len(), 1, "{name} holds one document");
    docs.remove(0)
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_vec()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An image reference with an explicit version tag (no `latest`, no bare name).
fn assert_pinned(service: &Yaml, name: &str) {
    let image = service["image"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has an image"));
    let (_, tag) = image
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
    assert!(
        tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
        "{name}: {image}"
    );
}

fn assert_database_services(file: &str, compose: &Yaml) {
    let postgres = &compose["services"]["postgres"];
    assert_pinned(postgres, "postgres");
    // Database and admin ports are reachable from this machine only, unless opened on purpose.
    assert_eq!(
        strings(&postgres["ports"]),
        ["127.0.0.1:15432:5432"],
        "{file}"
    );
    assert_eq!(postgres["env_file"].as_str(), Some(".env-db"), "{file}");
    assert!(
        !postgres["healthcheck"]["test"].is_badvalue(),
        "{file}: a healthcheck"
    );
    let volume = strings(&postgres["volumes"]).remove(0);
    let named = volume.split(':').next().unwrap();
    assert!(
        !compose["volumes"][named].is_badvalue(),
        "{file}: volume {named} is declared"
    );
    let adminer = &compose["services"]["adminer"];
    assert_pinned(adminer, "adminer");
    assert_eq!(
        strings(&adminer["ports"]),
        ["127.0.0.1:8080:8080"],
        "{file}"
    );
}

#[test]
fn postgres_dc_runs_postgres_and_adminer() {
    let compose = load("postgres-dc.yaml");
    assert_database_services("postgres-dc.yaml", &compose);
}

/// A service with its YAML merge key (`<<: *node`) applied: its own keys win.
fn service(compose: &Yaml, name: &str) -> yaml_rust2::yaml::Hash {
    let own = compose["services"][name]
        .as_hash()
        .unwrap_or_else(|| panic!("service {name}"));
    let mut merged = own
        .get(&Yaml::from_str("<<"))
        .and_then(Yaml::as_hash)
        .cloned()
        .unwrap_or_default();
    for (key, value) in own {
        if key.as_str() != Some("<<") {
            merged.insert(key.clone(), value.clone());
        }
    }
    merged
}

fn get<'a>(service: &'a yaml_rust2::yaml::Hash, key: &str) -> &'a Yaml {
    service
        .get(&Yaml::String(key.to_owned()))
        .unwrap_or(&Yaml::BadValue)
}

const NODES: [&str; 4] = ["node1", "node2", "node3", "node4"];

#[test]
fn docker_compose_runs_four_nodes_each_with_its_own_key() {
    let compose = load("docker-compose.yaml");
    assert_database_services("docker-compose.yaml", &compose);
    let services = &compose["services"];
    let bootstrap = strings(&services["bootstrap"]["command"]);
    assert_eq!(&bootstrap[..2], ["bootstrap", "--name"]);
    assert!(
        services["node"].is_badvalue(),
        "no scalable node service: its replicas would share one key volume"
    );
    let mut key_volumes = Vec::new();
    for (index, name) in NODES.iter().enumerate() {
        let node = service(&compose, name);
        let args = strings(get(&node, "command"));
        let parsed = Cli::try_parse_from(std::iter::once("oracle".to_owned()).chain(args.clone()));
        assert!(
            parsed.is_ok(),
            "{name}: oracle refuses {args:?}: {parsed:?}"
        );
        let command = args.join(" ");
        for part in [
            "run ",
            &format!("--name {name}"),
            &format!("--key-dir /keys/{name}"),
            "--migrate=false",
            &format!("--db-env /keys/{name}/env-db"),
            "--bootstrap /dns4/bootstrap/tcp/4001",
            "--allow-unauthenticated-bootstrap",
            "--http 0.0.0.0:9100",
        ] {
            assert!(
                command.contains(part),
                "{name} command has {part}: {command}"
            );
        }
        assert_eq!(
            strings(get(&node, "ports")),
            [format!("127.0.0.1:{}:9100", 9101 + index)],
            "{name}"
        );
        let volumes = strings(get(&node, "volumes"));
        assert_eq!(volumes.len(), 1, "{name} mounts its key volume only");
        let (volume, target) = volumes[0].split_once(':').unwrap();
        assert_eq!(target, format!("/keys/{name}"), "{name}");
        assert!(
            !compose["volumes"][volume].is_badvalue(),
            "{volume} declared"
        );
        key_volumes.push(volume.to_owned());

        // Its own least-privilege role (setup writes its env-db), never the admin credential;
        // after the key ceremony.
        assert!(
            get(&node, "env_file").is_badvalue(),
            "{name} reads no shared env file"
        );
        assert_eq!(
            get(&node, "depends_on")["setup"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{name}"
        );
        assert_eq!(get(&node, "image").as_str(), Some("price-oracle:dev"));
    }
    key_volumes.sort();
    key_volumes.dedup();
    assert_eq!(key_volumes.len(), NODES.len(), "one key volume per node");

    let setup = service(&compose, "setup");
    assert_eq!(
        get(&setup, "env_file").as_str(),
        Some(".env-db"),
        "admin credential"
    );
    // As the container's shell gets it: compose turns $$ into $.
    let script = strings(get(&setup, "command")).join(" ").replace("$$", "$");
    for part in [
        "oracle migrate",
        "oracle db-role --role \"oracle_$n\" --node \"$address\"",
        "POSTGRES_USER=oracle_%s",
        "oracle keygen --name \"$n\" --key-dir \"/keys/$n\"",
        "oracle signers add --key \"$n\" --key-dir \"/keys/$n\" --label \"$n\"",
    ] {
        assert!(script.contains(part), "setup runs {part}: {script}");
    }
    // Every plain `oracle …` command of the ceremony is one the CLI accepts.
    for command in script.split(';').filter(|command| !command.contains("$(")) {
        if let Some(start) = command.find("oracle ") {
            let args: Vec<&str> = command[start..]
                .split_whitespace()
                .map(|arg| arg.trim_matches('"'))
                .collect();
            if let Err(err) = Cli::try_parse_from(&args) {
                panic!("setup runs {args:?}, which oracle refuses: {err}");
            }
        }
    }
    let setup_volumes = strings(get(&setup, "volumes"));
    for (name, volume) in NODES.iter().zip(&key_volumes) {
        assert!(
            setup_volumes.contains(&format!("{volume}:/keys/{name}")),
            "setup mounts {volume}: {setup_volumes:?}"
        );
        assert!(
            get(&setup, "environment")["NODES"]
                .as_str()
                .is_some_and(|nodes| nodes.split(' ').any(|n| n == *name)),
            "setup knows {name}"
        );
    }

    for service in ["bootstrap", "mock-exchange"] {
        assert_eq!(
            services[service]["image"].as_str(),
            Some("price-oracle:dev"),
            "{service} runs the project's image"
        );
    }
}

#[test]
fn the_image_runs_oracle_as_a_non_root_user() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    let dockerfile = std::fs::read_to_string(path).unwrap();
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(last_stage.contains("\nUSER oracle"), "{last_stage}");
    assert!(last_stage.contains("ENTRYPOINT [\"oracle\"]"));
    assert!(
        dockerfile.contains("cargo chef cook"),
        "dependency layer cached"
    );
    assert!(
        dockerfile.matches("\nFROM ").count() + 1 >= 3,
        "multi-stage"
    );
}
