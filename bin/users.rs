//! `mcp-hub user …`: the hub's users for team login, managed in its database directly (the hub
//! need not run; restart it after adding the first user, which turns login on).

use std::{io::BufRead, io::IsTerminal, path::PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use mcp_hub::login::{Login, Role};

/// A line on stdout (through `lab::say`: a closed pipe is not a panic).
macro_rules! say {
    ($($arg:tt)*) => {
        super::lab::say(&format!("{}\n", format_args!($($arg)*)))
    };
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user. The password is read from stdin (one line; typed without echo on a
    /// terminal).
    Add {
        username: String,
        /// viewer (read), operator (also push, call tools, start lab runs) or admin
        /// (everything, users included).
        #[arg(long)]
        role: String,
        #[command(flatten)]
        database: Database,
    },
    /// List the users and their roles.
    List {
        #[command(flatten)]
        database: Database,
    },
    /// Change a user's role and/or password (`--password` reads a new one from stdin; it also
    /// ends the user's sessions).
    Set {
        username: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        password: bool,
        #[command(flatten)]
        database: Database,
    },
    /// Remove a user (their refresh tokens stop working at once).
    Remove {
        username: String,
        #[command(flatten)]
        database: Database,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct Database {
    /// The hub's database: sqlite:PATH or postgres://…; default: the SQLite file `mcp-hub
    /// serve` uses by default.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

pub(crate) async fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            username,
            role,
            database,
        } => {
            let role: Role = role.parse()?;
            let login = open(database).await?;
            let password = read_password(&format!("password for {username}: "))?;
            let user = login.add_user(&username, role, &password).await?;
            say!("added {} ({})", user.username, user.role.as_str());
        }
        UserCommand::List { database } => {
            let login = open(database).await?;
            let users = login.store().users().await?;
            if users.is_empty() {
                say!("no users: login is off (add one with `mcp-hub user add NAME --role admin`)");
            }
            for user in users {
                say!(
                    "{:<24} {:<9} added {}",
                    user.username,
                    user.role.as_str(),
                    user.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        UserCommand::Set {
            username,
            role,
            password,
            database,
        } => {
            if role.is_none() && !password {
                bail!("give --role, --password or both");
            }
            let role = role.as_deref().map(str::parse::<Role>).transpose()?;
            let login = open(database).await?;
            let password = password
                .then(|| read_password(&format!("new password for {username}: ")))
                .transpose()?;
            let user = login
                .change_user(&username, role, password.as_deref())
                .await?;
            say!("changed {} ({})", user.username, user.role.as_str());
        }
        UserCommand::Remove { username, database } => {
            let login = open(database).await?;
            if !login.store().delete_user(&username).await? {
                bail!("no user named {username:?}");
            }
            say!("removed {username}");
        }
    }
    Ok(())
}

async fn open(database: Database) -> anyhow::Result<Login> {
    let url = match database.database_url {
        Some(url) => url,
        None => format!("sqlite://{}", default_database()?.display()),
    };
    if url == "memory:" {
        bail!("memory: keeps no users: give the hub's sqlite: or postgres:// database");
    }
    let stores = mcp_hub::snapshot::open(&url)
        .await
        .with_context(|| format!("opening {}", super::cli::redact(&url)))?;
    // The key only signs tokens, which this command never hands out.
    Ok(Login::new(stores.users, Login::random_key()?).await?)
}

/// Where `mcp-hub serve` keeps its database by default.
pub(crate) fn default_database() -> anyhow::Result<PathBuf> {
    let dir = dirs::data_dir()
        .context("no data directory for this user; pass --database-url")?
        .join("switchboard");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("hub.db"))
}

/// One line from stdin; on a terminal, after a prompt and with echo off (through `stty`).
fn read_password(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let echo = |on: bool| {
        let _ = std::process::Command::new("stty")
            .arg(if on { "echo" } else { "-echo" })
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if terminal {
        eprint!("{prompt}");
        echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        echo(true);
        eprintln!();
    }
    read.context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password given on stdin");
    }
    Ok(password)
}
