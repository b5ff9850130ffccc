#!/usr/bin/env python3
"""Writes or reads a Web3 Secret Storage v3 keystore with eth-account, an Ethereum library
independent of this project: the other side of the keystore interoperability checks.

  eth-account-keystore.py write PASSWORD_FILE OUT [--key HEX] [--kdf scrypt|pbkdf2] [--work N]
      writes OUT (eth-account's defaults: scrypt n=262144, r=8, p=1) and prints its address
  eth-account-keystore.py read KEYSTORE PASSWORD_FILE
      decrypts KEYSTORE and prints the address of its key

The password is the file's contents less trailing line breaks, as `oracle` reads it.
tests/fixtures/keystores/eth-account-*.json were made with `write` (their tests say how).
"""

import argparse
import json
import os
import secrets
import sys

from eth_account import Account


def password(path):
    with open(path, encoding="utf-8") as file:
        return file.read().rstrip("\r\n")


def write(args):
    key = args.key or secrets.token_hex(32)
    keystore = Account.encrypt(key, password(args.password_file), kdf=args.kdf, iterations=args.work)
    # Never over an existing file, and readable by its owner only, as a key file should be.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(keystore, file, indent=2, sort_keys=True)
        file.write("\n")
    print(Account.from_key(key).address)


def read(args):
    with open(args.keystore, encoding="utf-8") as file:
        keystore = json.load(file)
    print(Account.from_key(Account.decrypt(keystore, password(args.password_file))).address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True)
    writer = commands.add_parser("write")
    writer.add_argument("password_file")
    writer.add_argument("out")
    writer.add_argument("--key", help="the secret key, 64 hex digits [default: a random one]")
    writer.add_argument("--kdf", choices=["scrypt", "pbkdf2"], default="scrypt")
    writer.add_argument("--work", type=int, help="scrypt n or pbkdf2 iterations")
    writer.set_defaults(run=write)
    reader = commands.add_parser("read")
    reader.add_argument("keystore")
    reader.add_argument("password_file")
    reader.set_defaults(run=read)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
