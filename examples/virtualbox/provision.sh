#!/bin/sh
# provision.sh creates a VirtualBox VM for cardshare without a single
# question: a Debian 12 cloud image, set up on first boot by cloud-init (a
# user with your SSH key, pcsc-lite's client library, pcsc-tools and
# opensc), a NAT port forward 127.0.0.1:PORT -> guest port 22, and, when the
# cardshare binary is installed, `cardshare guest setup` so that the user's
# programs find the forwarded socket. See README.md for the same steps by
# hand and for what each one does.
#
#   ./provision.sh                       # VM "devvm", user "dev", port 2222
#   ./provision.sh --name vm2 --port 2223
#   ./provision.sh --dry-run             # print the commands, run nothing
#   ./provision.sh --delete              # power off and delete the VM
#
# Needs: VBoxManage (VirtualBox 7), curl or wget, tar with xz, ssh,
# ssh-keygen, and one of xorriso, genisoimage, mkisofs or hdiutil (macOS) to
# write the cloud-init seed image. Runs on x86_64 Linux and macOS hosts;
# Apple Silicon needs an arm64 guest with UEFI, which this script does not set up.
set -eu

name=devvm
port=2222
user=dev
key=
memory=2048
cpus=2
disk_mb=10240
dry_run=0
delete=0
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cardshare
image_url=https://cloud.debian.org/images/cloud/bookworm/latest

usage() {
	sed -n '2,19s/^# \{0,1\}//p' "$0"
	echo
	echo "Options: --name NAME (devvm)  --port PORT (2222)  --user USER (dev)"
	echo "         --key PUBKEY (first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)"
	echo "         --memory MB (2048)  --cpus N (2)  --disk MB (10240)  --dry-run  --delete"
	exit "${1:-0}"
}

while [ $# -gt 0 ]; do
	case $1 in
	--name) name=$2; shift ;;
	--port) port=$2; shift ;;
	--user) user=$2; shift ;;
	--key) key=$2; shift ;;
	--memory) memory=$2; shift ;;
	--cpus) cpus=$2; shift ;;
	--disk) disk_mb=$2; shift ;;
	--dry-run) dry_run=1 ;;
	--delete) delete=1 ;;
	-h|--help) usage 0 ;;
	*) echo "provision.sh: unknown option $1" >&2; usage 2 >&2 ;;
	esac
	shift
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'provision.sh: %s\n' "$*" >&2; exit 1; }

# run prints a command and runs it, unless this is a dry run.
run() {
	printf '+ %s\n' "$*"
	[ "$dry_run" = 1 ] || "$@"
}

need() {
	command -v "$1" >/dev/null 2>&1 || [ "$dry_run" = 1 ] || die "needs $1${2:+ ($2)}"
}

case $name in
''|-*|*[!A-Za-z0-9._-]*) die "--name must be letters, digits and ._- (it is also the VM name cardshare resolves)" ;;
esac
case $port in
''|*[!0-9]*) die "--port must be a number" ;;
esac

need VBoxManage "install VirtualBox 7 from https://www.virtualbox.org"

if [ "$delete" = 1 ]; then
	say "deleting VM $name"
	run VBoxManage controlvm "$name" poweroff || true
	run VBoxManage unregistervm "$name" --delete
	run ssh-keygen -R "[127.0.0.1]:$port"
	exit 0
fi

if [ "$dry_run" = 0 ] && VBoxManage showvminfo "$name" >/dev/null 2>&1; then
	die "a VM named $name exists already; delete it with --delete, or choose --name"
fi

# The SSH key that will log in as $user.
if [ -z "$key" ]; then
	for k in "$HOME/.ssh/id_ed25519.pub" "$HOME/.ssh/id_ecdsa.pub" "$HOME/.ssh/id_rsa.pub"; do
		if [ -f "$k" ]; then key=$k; break; fi
	done
fi
if [ -z "$key" ] || [ ! -f "$key" ]; then
	[ "$dry_run" = 1 ] || die "no SSH public key: create one with \`ssh-keygen -t ed25519\`, or pass --key FILE.pub"
	key=$HOME/.ssh/id_ed25519.pub
fi

case $(uname -m) in
x86_64|amd64) ;;
*) die "this script sets up x86_64 guests only; on $(uname -m), follow README.md with an arm64 image" ;;
esac
ostype=Debian_64
image=debian-12-generic-amd64.tar.xz

# 1. The Debian cloud image, downloaded once and checked against Debian's
# SHA512SUMS.
need tar
download() { # url file
	if command -v curl >/dev/null 2>&1; then run curl -fL --retry 3 -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then run wget -O "$2" "$1"
	else die "needs curl or wget"
	fi
}
sha512() {
	if command -v sha512sum >/dev/null 2>&1; then sha512sum "$1"; else shasum -a 512 "$1"; fi | cut -d' ' -f1
}
run mkdir -p "$cache"
if [ ! -f "$cache/$image" ]; then
	say "downloading $image_url/$image"
	download "$image_url/$image" "$cache/$image.part"
	download "$image_url/SHA512SUMS" "$cache/SHA512SUMS"
	if [ "$dry_run" = 0 ]; then
		want=$(awk -v f="$image" '$2 == f { print $1 }' "$cache/SHA512SUMS")
		[ -n "$want" ] || die "$image is not in SHA512SUMS"
		[ "$(sha512 "$cache/$image.part")" = "$want" ] || die "checksum of $image does not match SHA512SUMS; delete $cache and run again"
	fi
	run mv "$cache/$image.part" "$cache/$image"
fi

# 2. The VM: NAT with the port forward, a serial console logged to a file
# (cloud-init's progress), no audio, headless.
say "creating VM $name"
run VBoxManage createvm --name "$name" --ostype "$ostype" --register
if [ "$dry_run" = 1 ]; then
	vmdir="\$HOME/VirtualBox VMs/$name"
else
	cfg=$(VBoxManage showvminfo "$name" --machinereadable | sed -n 's/^CfgFile="\(.*\)"$/\1/p')
	vmdir=$(dirname "$cfg")
fi
run VBoxManage modifyvm "$name" --memory "$memory" --cpus "$cpus" \
	--nic1 nat --natpf1 "ssh,tcp,127.0.0.1,$port,,22" \
	--uart1 0x3F8 4 --uartmode1 file "$vmdir/console.log" \
	--graphicscontroller vmsvga --boot1 disk --boot2 none --boot3 none --boot4 none

# 3. The disk, from the image's disk.raw; cloud-init grows the root
# partition to the new size on first boot.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run tar -xJf "$cache/$image" -C "$work" disk.raw
run VBoxManage convertfromraw "$work/disk.raw" "$vmdir/$name.vdi" --format VDI
run rm -f "$work/disk.raw"
run VBoxManage modifymedium disk "$vmdir/$name.vdi" --resize "$disk_mb"

# 4. The cloud-init seed (NoCloud: an ISO 9660 image labelled cidata).
# --no-install-recommends keeps the guest's own pcscd out: programs use the
# host's readers through cardshare.
say "writing the cloud-init seed"
pubkey=$(cat "$key" 2>/dev/null || echo "ssh-ed25519 AAAA... you@host")
cat > "$work/user-data" <<EOF
#cloud-config
hostname: $name
users:
  - name: $user
    shell: /bin/bash
    # Passwordless sudo, as on Debian's cloud images, so that
    # \`cardshare guest setup --system\` can work; remove for a shared VM.
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - $pubkey
ssh_pwauth: false
package_update: true
runcmd:
  - [sh, -c, "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpcsclite1 pcsc-tools opensc"]
EOF
printf 'instance-id: %s\nlocal-hostname: %s\n' "$name-1" "$name" > "$work/meta-data"
seed="$vmdir/seed.iso"
iso=
for t in xorriso genisoimage mkisofs hdiutil; do
	if command -v "$t" >/dev/null 2>&1; then iso=$t; break; fi
done
if [ -z "$iso" ]; then
	[ "$dry_run" = 1 ] || die "needs xorriso, genisoimage, mkisofs or hdiutil to write the cloud-init seed (Debian: sudo apt install xorriso)"
	iso=xorriso
fi
case $iso in
xorriso) run xorriso -as mkisofs -quiet -output "$seed" -volid cidata -joliet -rock "$work/user-data" "$work/meta-data" ;;
hdiutil)
	mkdir "$work/seed" && cp "$work/user-data" "$work/meta-data" "$work/seed/"
	run hdiutil makehybrid -quiet -o "$seed" -iso -joliet -default-volume-name cidata "$work/seed" ;;
*) run "$iso" -quiet -output "$seed" -volid cidata -joliet -rock "$work/user-data" "$work/meta-data" ;;
esac

run VBoxManage storagectl "$name" --name SATA --add sata --controller IntelAhci --portcount 2
run VBoxManage storageattach "$name" --storagectl SATA --port 0 --device 0 --type hdd --medium "$vmdir/$name.vdi"
run VBoxManage storageattach "$name" --storagectl SATA --port 1 --device 0 --type dvddrive --medium "$seed"

# 5. Boot, wait for SSH and for cloud-init to finish. The VM is new, so its
# host key is recorded on first use (after forgetting the key of an earlier
# VM on the same port).
say "starting $name"
run VBoxManage startvm "$name" --type headless
run ssh-keygen -R "[127.0.0.1]:$port" >/dev/null 2>&1 || true
ssh_guest() {
	ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=accept-new -p "$port" "$user@127.0.0.1" "$@"
}
say "waiting for SSH on 127.0.0.1:$port (first boot takes a minute or two; console: $vmdir/console.log)"
if [ "$dry_run" = 0 ]; then
	tries=0
	until ssh_guest true 2>/dev/null; do
		tries=$((tries + 1))
		[ "$tries" -lt 60 ] || die "no SSH after 5 minutes; see $vmdir/console.log"
		sleep 5
	done
fi
run ssh_guest cloud-init status --wait
run VBoxManage storageattach "$name" --storagectl SATA --port 1 --device 0 --type dvddrive --medium emptydrive

# 6. Point the guest user's programs at the socket cardshare will forward.
if command -v cardshare >/dev/null 2>&1; then
	run cardshare resolve "$user@$name"
	run cardshare guest setup "$user@$name"
	next="cardshare doctor $user@$name && cardshare expose $user@$name"
else
	next="cardshare expose --setup-guest $user@$name"
fi
say "done: $name runs headless with SSH on 127.0.0.1:$port as $user"
echo "    next: $next"
echo "    then, in the guest (ssh -p $port $user@127.0.0.1): pcsc_scan -r; opensc-tool -l"
echo "    or run cardshare as a service: see config.yaml in this directory"
