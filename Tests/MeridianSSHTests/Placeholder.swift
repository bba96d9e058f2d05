// Integration tests of the SSH transport against real sshd test hosts.
