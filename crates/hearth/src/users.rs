//! `hearth users`: the console's accounts.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use hearth_core::console::{Role, PASSWORD_CHARS};
use hearth_core::{Config, Platform};

use crate::cli::UsersCommand;

fn role(text: &str) -> Result<Role> {
    Role::parse(text).with_context(|| format!("role '{text}': use admin, support or viewer"))
}

/// A new password: typed twice without echo on a terminal, else the first line of stdin.
fn read_password(name: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!(
            "password for '{name}' ({}+ characters): ",
            PASSWORD_CHARS.0
        ))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input (give it as the first line, or run in a terminal)");
    }
    Ok(password)
}

pub fn run(config: Config, command: UsersCommand) -> Result<()> {
    let platform = Platform::open(config).context("opening hearth's data directory")?;
    let accounts = platform.accounts()?;
    match command {
        UsersCommand::Create {
            name,
            role: r,
            password,
        } => {
            let r = role(&r)?;
            let password = match password {
                Some(p) => p,
                None => read_password(&name)?,
            };
            let account = accounts.create(&name, r, &password)?;
            println!(
                "created console account '{}' ({}); it signs in at /console",
                account.name, account.role
            );
        }
        UsersCommand::List { json } => {
            let list = accounts.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no console accounts: `hearth users create NAME --role admin` makes one");
            } else {
                println!("{:<32} ROLE", "NAME");
                for a in list {
                    println!("{:<32} {}", a.name, a.role);
                }
            }
        }
        UsersCommand::SetPassword { name, password } => {
            if accounts.get(&name)?.is_none() {
                bail!("no console account named '{name}' (`hearth users list`)");
            }
            let password = match password {
                Some(p) => p,
                None => read_password(&name)?,
            };
            accounts.set_password(&name, &password)?;
            println!("password of '{name}' set; its sessions are signed out");
        }
        UsersCommand::SetRole { name, role: r } => {
            let r = role(&r)?;
            accounts.set_role(&name, r)?;
            println!("'{name}' is now {r}");
        }
        UsersCommand::Delete { name } => {
            if !accounts.delete(&name)? {
                bail!("no console account named '{name}' (`hearth users list`)");
            }
            println!("deleted '{name}' and ended its sessions");
        }
    }
    Ok(())
}
