"""xtables (iptables / ip6tables) syntax: typed objects, the one writer and the one reader of
iptables-restore input, iptables-save output and `iptables -S` listings. Nothing here knows
what a Service is; only this package spells xtables syntax.

Objects (model.py)
    Table(name)                 .chain(name) declares a user-defined chain, .add(chain, *parts)
                                appends a rule (empty parts dropped), .jumps holds Jump(chain,
                                spec): rules inserted at the top of built-in chains;
                                .policies: built-in chains a save declared, with their policy
    Rule(chain, spec)           `spec` = match and target arguments, quoted as iptables-restore
                                reads them (see quoting.comment); also the `-A` command
    Transaction(table, commands, fetch_table)
                                one `*table ... COMMIT` section; commands: DeclareChain (`:C - [0:0]`,
                                creates or flushes), Rule (`-A`), InsertRule (`-I C N`),
                                ReplaceRule (`-R C N`), DeleteRule (`-D C SPEC`), DeleteRuleAt
                                (`-D C N`), FlushChain (`-F`), DeleteChain (`-X`), ListRules (`-S`)
    BUILTIN_CHAINS              table -> its built-in chains

Writing (writer.py)
    write(transactions, header=)        any restore input: full, `--noflush`, positional edits
    transaction_of(table, jumps=)       a whole table as one section
    write_tables(tables, jumps=, header=)  a renderer's payload
    builtin_chains(tables)              no-op sections that create missing built-in chains

Reading (reader.py)
    parse_restore(text)                 -> [Transaction], each command with its line number
    read_command(line)                  -> Command | None: one line of restore input
    read_tables(text)                   -> {table: Table}: a save, or what write_tables wrote
    read_listing(text, table)           -> Table: `iptables -S [CHAIN]` output
    read_listings(text)                the whole-table listings a restore's `-S` printed
    jump_targets(spec), comment_of(spec)

Families (spelling.py): spelling(IPFamily) -> Spelling with restore_argv(test=), save_argv(table),
list_argv(table, chain): `iptables`/`ip6tables` and friends, one row per family.

Quoting (quoting.py): comment(text) -> `-m comment --comment "..."` that cannot leave its
quotes; split_args/join_args/normalize follow iptables-restore's tokenizer.

Names (names.py): CHAIN_NAME_MAX and hash16(text), kube-proxy's chain-name hash.

Tool messages (messages.py): error_line(stderr), culprit(lines, n, message), lock_busy(message).

Emulation (fake.py): XtablesEmulator, an in-memory iptables / iptables-restore / iptables-save
for svc2rules.host.fake.FakeRunner.

Facts about iptables-nft 1.8.9 the objects encode:
* each `*table ... COMMIT` section is its own kernel transaction; one input may hold several
  sections of the same table, committed in order;
* `--noflush` restores keep a sorted list of every chain a command names, quadratic in the
  chains of a big section (1k Services x 10 endpoints: 38 s instead of 1.7 s); a chain-less
  `-S` first (Transaction.fetch_table) makes the restore fetch the whole table once instead.
  It cannot create missing built-in chains: builtin_chains() sections do that first;
* `--test` parses but does not resolve chain references;
* `-S` inside a restore prints the listing to the restore's stdout.
"""

from svc2rules.syntax.xtables.messages import culprit, error_line, lock_busy
from svc2rules.syntax.xtables.model import (
    BUILTIN_CHAINS,
    NO_POLICY,
    RULE_COMMANDS,
    Command,
    DeclareChain,
    DeleteChain,
    DeleteRule,
    DeleteRuleAt,
    FlushChain,
    InsertRule,
    Jump,
    ListRules,
    ReplaceRule,
    Rule,
    Table,
    Transaction,
    chains_of,
    is_builtin,
)
from svc2rules.syntax.xtables.names import CHAIN_NAME_MAX, hash16
from svc2rules.syntax.xtables.quoting import comment, join_args, normalize, quote, split_args
from svc2rules.syntax.xtables.reader import (
    ReadError,
    comment_of,
    jump_targets,
    parse_restore,
    read_command,
    read_listing,
    read_listings,
    read_tables,
)
from svc2rules.syntax.xtables.spelling import SPELLINGS, XTABLES_WAIT, Spelling, spelling
from svc2rules.syntax.xtables.writer import (
    PROBE_COMMENT,
    builtin_chains,
    transaction_of,
    write,
    write_tables,
)

__all__ = [
    "BUILTIN_CHAINS",
    "CHAIN_NAME_MAX",
    "NO_POLICY",
    "PROBE_COMMENT",
    "RULE_COMMANDS",
    "SPELLINGS",
    "XTABLES_WAIT",
    "Command",
    "DeclareChain",
    "DeleteChain",
    "DeleteRule",
    "DeleteRuleAt",
    "FlushChain",
    "InsertRule",
    "Jump",
    "ListRules",
    "ReadError",
    "ReplaceRule",
    "Rule",
    "Spelling",
    "Table",
    "Transaction",
    "builtin_chains",
    "chains_of",
    "comment",
    "comment_of",
    "culprit",
    "error_line",
    "hash16",
    "is_builtin",
    "join_args",
    "jump_targets",
    "lock_busy",
    "normalize",
    "parse_restore",
    "quote",
    "read_command",
    "read_listing",
    "read_listings",
    "read_tables",
    "spelling",
    "split_args",
    "transaction_of",
    "write",
    "write_tables",
]
