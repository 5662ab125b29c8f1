// Package sshconfig reads ssh_config(5) files for the keywords a
// connection needs, for when no ssh program can evaluate them for us
// (`ssh -G`): Windows without its OpenSSH feature, Wine, a minimal
// container. It only reads; what the values mean (defaults, tokens,
// agents) is sshdial's job.
//
// As OpenSSH does: the first value obtained for a keyword wins, except
// IdentityFile, whose values add up; Host blocks with * and ? patterns and
// !negation, case-insensitive; Include (globs, relative to the file's
// Dir, nested up to 16 deep); "Keyword=value" and double-quoted
// arguments; # comments. Match blocks apply for "all" and the host,
// originalhost, user and localuser criteria; a Match with any other
// criterion (exec, canonical, final, tagged, localnetwork) is taken not to
// apply, since only ssh could evaluate it.
//
// github.com/kevinburke/ssh_config was considered: it is not among the
// modules this project may take, and it rejects a whole file that has a
// Match block, which OpenSSH users commonly have.
//
// It imports nothing from cardshare.
package sshconfig
