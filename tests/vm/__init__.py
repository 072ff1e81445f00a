"""The qemu test guest: a Debian kernel with real configfs and LIO, built and booted for the
``realkernel`` lane (``build`` makes it, ``qemu`` boots it, ``agent`` runs inside it)."""
