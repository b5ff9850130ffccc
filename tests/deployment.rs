//! The deployment files parse and say what the README promises. Docker itself may be absent
//! where the tests run, so the files are checked as YAML structures.

use std::path::Path;

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
    assert_eq!(strings(&postgres["ports"]), ["15432:5432"], "{file}");
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
    assert_eq!(strings(&adminer["ports"]), ["8080:8080"], "{file}");
}

#[test]
fn postgres_dc_runs_postgres_and_adminer() {
    let compose = load("postgres-dc.yaml");
    assert_database_services("postgres-dc.yaml", &compose);
}

#[test]
fn docker_compose_runs_a_scalable_network() {
    let compose = load("docker-compose.yaml");
    assert_database_services("docker-compose.yaml", &compose);
    let services = &compose["services"];
    let bootstrap = strings(&services["bootstrap"]["command"]);
    assert_eq!(&bootstrap[..2], ["bootstrap", "--name"]);
    let node = &services["node"];
    let command = strings(&node["command"]).join(" ");
    for part in [
        "oracle run",
        "--bootstrap /dns4/bootstrap/tcp/4001",
        "--http 0.0.0.0:9100",
    ] {
        assert!(command.contains(part), "node command has {part}: {command}");
    }
    // Scaling needs a port range, not a fixed host port.
    assert_eq!(strings(&node["ports"]), ["9100-9199:9100"]);
    assert!(
        strings(&node["volumes"])
            .iter()
            .any(|v| v.ends_with(":/keys"))
    );
    assert_eq!(node["environment"]["DB_HOST"].as_str(), Some("postgres"));
    for service in ["bootstrap", "node", "mock-exchange"] {
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
