//! `cargo run -p migration -- up|status|down|fresh` against a fresh database, as a user runs it.

use std::process::Command;

use sea_orm_migration::sea_orm::{ConnectionTrait, Database};

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn migration(url: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run the migration binary");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn the_migration_cli_works_on_a_fresh_database() {
    let name = format!("oracle_test_migration_cli_{:08x}", std::process::id());
    let admin = Database::connect(server_url())
        .await
        .expect("test PostgreSQL answers");
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let (base, _) = server_url()
        .rsplit_once('/')
        .map(|(b, d)| (b.to_owned(), d.to_owned()))
        .unwrap();
    let url = format!("{base}/{name}");

    let steps: [(&[&str], &str); 5] = [
        (&["status"], "Pending"),
        (&["up"], "Applying"),
        (&["status"], "Applied"),
        (&["down", "-n", "2"], "Rolling back"),
        (&["fresh"], "Applying"),
    ];
    let mut failure = None;
    for (args, expected) in steps {
        let (ok, text) = migration(&url, args);
        if !ok || !text.contains(expected) {
            failure = Some(format!("`migration {}`: {text}", args.join(" ")));
            break;
        }
    }
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    if let Some(failure) = failure {
        panic!("{failure}");
    }
}
