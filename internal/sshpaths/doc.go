// Package sshpaths knows where OpenSSH keeps its files, its agent and its
// program on each host OS, and dials the agent where it is a Windows named
// pipe.
//
// The answers are pure functions of a Host (the OS, the home directory and
// a few look-ups that tests replace), so that the macOS and Windows rules
// are tested on Linux:
//
//   - user files in ~/.ssh, which is %USERPROFILE%\.ssh on Windows;
//     system files in /etc/ssh, which is %ProgramData%\ssh for Windows'
//     OpenSSH (PowerShell/Win32-OpenSSH keeps __PROGRAMDATA__\ssh);
//   - the agent: $SSH_AUTH_SOCK; on macOS launchd's per-session socket
//     (launchctl getenv SSH_AUTH_SOCK) when the variable was not passed
//     down; on Windows the OpenSSH agent's pipe \\.\pipe\openssh-ssh-agent,
//     else Pageant's \\.\pipe\pageant.USER.HASH;
//   - the ssh program: on Windows the one that ships with Windows 10 and
//     later (%SystemRoot%\System32\OpenSSH\ssh.exe) is preferred to Git for
//     Windows' MSYS ssh, which prints POSIX paths (/c/Users/...) in ssh -G
//     and cannot reach the agent's pipe.
//
// It imports nothing from cardshare.
package sshpaths
