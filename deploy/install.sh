#!/usr/bin/env bash
# Install (or uninstall) edged as a systemd service on Debian, Ubuntu, Raspberry Pi OS and Jetson Linux.
# Run it from a checkout or an unpacked release; `deploy/install.sh --help` says what it does and how.
set -euo pipefail
umask 022 # the venv, the zoo and the unit must be readable by the service's user whatever root's umask is

SOURCE_TREE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly SOURCE_TREE
readonly TEMPLATE_DIR="$SOURCE_TREE/deploy/configs"
readonly UNIT_TEMPLATE="$SOURCE_TREE/systemd/edged.service"
readonly SERVICE_USER=edged
readonly SUPPLEMENTARY_GROUPS=(video i2c dialout) # must match SupplementaryGroups= in systemd/edged.service
# Paths that must not contain spaces or characters that systemd or sed would read specially.
readonly SAFE_PATH='^[A-Za-z0-9._/+-]+$'
readonly ORIGINAL_ARGS=("$@")

usage() {
	cat <<'EOF'
Usage: deploy/install.sh [OPTIONS]
       deploy/install.sh --uninstall [--purge] [--prefix DIR]

Installs edged as a systemd service:
  PREFIX/opt/edged/venv                   a virtual environment with edged (from this source tree, or from a
                                          wheelhouse with --wheelhouse)
  PREFIX/opt/edged/model_zoo              the model family, copied from model_zoo/ in this tree when it exists
  PREFIX/etc/edged/edged.yaml             the config, from deploy/configs/<NAME>.yaml (--config-template)
  PREFIX/etc/edged/edged.env              secrets for the config's ${VARS} (root-only), e.g. MQTT_PASSWORD=
  PREFIX/etc/systemd/system/edged.service the unit, ExecStart pointing at the venv above
  PREFIX/etc/bash_completion.d/edged      bash tab completion (`edged completion bash`)
and finally runs `edged config check` on the installed config.

A config you have edited is never overwritten: a newer template goes to edged.yaml.dist beside it. The
installer tells edited from pristine by the sha256 it recorded when it wrote the file (etc/edged/.pristine.sha256;
`cd /etc/edged && sha256sum -c .pristine.sha256` shows which files you changed).

With PREFIX / (the default; needs root) it also creates the system user and group 'edged', any missing group
among video, i2c, dialout (as system groups), then runs systemctl daemon-reload and systemctl enable edged.
With any other PREFIX (tests, packaging) users, groups and systemd are left alone: it prints what a real
install would run instead, and paths in the unit and the config point into PREFIX.

Options:
  --prefix DIR             install under DIR instead of / (no users, groups or systemctl)
  --config-template NAME   install deploy/configs/NAME.yaml as the config: pi-camera, drone-mavlink, laptop.
                           Needed on a first install; later, without it, the installed config is left as it is
  --wheelhouse DIR         offline: install edged and its dependencies from the wheels in DIR only
                           (pip install --no-index --find-links DIR); see deploy/README.md to build one
  --python-env DIR         use an existing Python environment in which edged is already installed (DIR/bin/edged)
                           instead of creating PREFIX/opt/edged/venv: a Jetson venv with NVIDIA's onnxruntime, a
                           distribution package, a development checkout's .venv. Uninstall leaves it alone
  --extras LIST            optional dependencies to install, comma-separated (default: tflite, plus mavlink and
                           pyserial when the config has a MAVLink power source; "" for none)
  --python PYTHON          the interpreter the venv is made from (default: python3; >= 3.10)
  --start                  (re)start the service at the end (only if the config check passes)
  --check                  only check the installed config: `edged config check` with edged.env's variables,
                           as the service's user (real install), with the edged the installed unit runs
  --uninstall              stop and disable the service, remove the unit and PREFIX/opt/edged; remove the
                           config if unedited, keep it (and say so) if edited; keep PREFIX/var/lib/edged
  --purge                  with --uninstall: also remove PREFIX/etc/edged (edited files included) and
                           PREFIX/var/lib/edged (the outbox: detections not yet delivered are lost)
  -h, --help               this help

Examples:
  sudo deploy/install.sh --config-template pi-camera --start
  sudo deploy/install.sh --config-template drone-mavlink --wheelhouse /media/usb/wheelhouse
  deploy/install.sh --prefix /tmp/edged-root --config-template laptop      # look before installing
  sudo deploy/install.sh --uninstall
EOF
}

# --- messages ---------------------------------------------------------------------------------------------------

step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'install.sh: error: %s\n' "$*" >&2
	exit 1
}

# --- options ----------------------------------------------------------------------------------------------------

prefix=/
config_template=""
wheelhouse=""
python_env=""
extras=""
extras_given=0
python=python3
start_service=0
check_only=0
uninstall=0
purge=0

take_value() { # OPTION VALUE
	[[ -n $2 || $1 == --extras ]] || die "$1 needs a value (see --help)"
	case $1 in
	--prefix) prefix=$2 ;;
	--config-template) config_template=$2 ;;
	--wheelhouse) wheelhouse=$2 ;;
	--python-env) python_env=$2 ;;
	--extras) extras=$2 extras_given=1 ;;
	--python) python=$2 ;;
	esac
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--prefix | --config-template | --wheelhouse | --python-env | --extras | --python)
		[[ $# -ge 2 ]] || die "$1 needs a value (see --help)"
		take_value "$1" "$2"
		shift 2
		;;
	--prefix=* | --config-template=* | --wheelhouse=* | --python-env=* | --extras=* | --python=*)
		take_value "${1%%=*}" "${1#*=}"
		shift
		;;
	--start) start_service=1 && shift ;;
	--check) check_only=1 && shift ;;
	--uninstall) uninstall=1 && shift ;;
	--purge) purge=1 && shift ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done

((purge == 0 || uninstall == 1)) || die "--purge goes with --uninstall"
((uninstall + check_only <= 1)) || die "--uninstall and --check exclude each other"
[[ -z $wheelhouse || -z $python_env ]] || die "--wheelhouse and --python-env exclude each other"
if ((uninstall || check_only)); then
	if [[ -n $config_template$wheelhouse$python_env || $start_service$extras_given != 00 || $python != python3 ]]; then
		die "--uninstall takes only --prefix and --purge, --check only --prefix"
	fi
fi

prefix=$(realpath -m -- "$prefix")
[[ $prefix =~ $SAFE_PATH ]] || die "--prefix '$prefix': only letters, digits and . _ / + - are supported in paths"
root=${prefix%/} # "" for a real install, so "$root/etc/edged" is /etc/edged
real_install=0
[[ -n $root ]] || real_install=1

readonly OPT_DIR="$root/opt/edged"
readonly VENV="$OPT_DIR/venv"
readonly ZOO_DIR="$OPT_DIR/model_zoo"
readonly ETC_DIR="$root/etc/edged"
readonly CONFIG="$ETC_DIR/edged.yaml"
readonly ENV_FILE="$ETC_DIR/edged.env"
readonly RECORD="$ETC_DIR/.pristine.sha256"
readonly UNIT="$root/etc/systemd/system/edged.service"
readonly STATE_DIR="$root/var/lib/edged"
readonly BASH_COMPLETION="$root/etc/bash_completion.d/edged"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# --- the record of pristine files -------------------------------------------------------------------------------
# sha256sum's format, names relative to ETC_DIR: "<sha256>  edged.yaml".

sha256_of() { sha256sum -- "$1" | cut -d' ' -f1; }

recorded_sha256() {
	[[ -f $RECORD ]] || return 0
	awk -v name="$1" '$2 == name { print $1 }' "$RECORD"
}

forget_sha256() {
	[[ -f $RECORD ]] || return 0
	awk -v name="$1" '$2 != name' "$RECORD" >"$workdir/record"
	if [[ -s $workdir/record ]]; then
		cat "$workdir/record" >"$RECORD"
	else
		rm -f -- "$RECORD"
	fi
}

record_sha256() {
	forget_sha256 "$1"
	printf '%s  %s\n' "$2" "$1" >>"$RECORD"
	chmod 0640 "$RECORD"
}

# --- installing -------------------------------------------------------------------------------------------------

# Paths in a template, as they are in a real install, moved into PREFIX.
render_paths() { sed -e "s|/opt/edged/|$root/opt/edged/|g" -e "s|/etc/edged/|$root/etc/edged/|g" "$1"; }

# Owner and mode of an installed file; only a real install changes owners.
set_owner() { # MODE GROUP PATH
	chmod "$1" "$3"
	if ((real_install)); then chown "root:$2" "$3"; fi
}

# Install a file the user may edit: new -> written; unedited (its sha256 is the recorded one) -> replaced by the
# new template; edited -> kept, the new template written beside it as NAME.dist when it differs.
install_user_file() { # TEMPLATE DEST MODE GROUP
	local template=$1 dest=$2 mode=$3 group=$4 name rendered new current recorded
	name=$(basename "$dest")
	rendered="$workdir/$name.new"
	render_paths "$template" >"$rendered"
	new=$(sha256_of "$rendered")
	if [[ ! -e $dest ]]; then
		cp -- "$rendered" "$dest"
		note "installed $dest (from ${template#"$SOURCE_TREE"/})"
	else
		current=$(sha256_of "$dest")
		recorded=$(recorded_sha256 "$name")
		if [[ $current == "$new" ]]; then
			note "$dest is up to date"
		elif [[ -n $recorded && $current == "$recorded" ]]; then
			cp -- "$rendered" "$dest"
			note "updated $dest (you had not edited it; new: ${template#"$SOURCE_TREE"/})"
		else
			cp -- "$rendered" "$dest.dist"
			set_owner "$mode" "$group" "$dest.dist"
			note "kept your edited $dest; the new template is beside it: diff -u $dest $dest.dist"
			return 0
		fi
	fi
	set_owner "$mode" "$group" "$dest"
	record_sha256 "$name" "$new"
	rm -f -- "$dest.dist"
}

# The service runs as its own user with ProtectHome=yes: an environment or an interpreter under /home or /root
# (pyenv, conda in a home directory) cannot run there.
check_reachable_by_service() { # WHAT PATH
	local resolved
	resolved=$(realpath -m -- "$2")
	case $resolved in
	/home/* | /root/* | /run/user/*)
		local problem="$1 $resolved is in a home directory, which the service cannot see (ProtectHome=yes, and its user may not enter it)"
		if ((real_install)); then die "$problem: use a Python outside /home and /root (--python /usr/bin/python3)"; fi
		warn "$problem; fine for a look at the files, not for a real install"
		;;
	esac
}

check_python_env() {
	[[ $python_env =~ $SAFE_PATH ]] || die "--python-env '$python_env': only letters, digits and . _ / + - are supported"
	[[ -x $python_env/bin/edged ]] || die "--python-env $python_env: no executable $python_env/bin/edged (install edged there first)"
	"$python_env/bin/edged" --version >/dev/null || die "$python_env/bin/edged does not run"
	check_reachable_by_service "the environment" "$python_env"
	[[ ! -e $python_env/bin/python ]] || check_reachable_by_service "its interpreter" "$python_env/bin/python"
}

check_python() {
	command -v "$python" >/dev/null || die "no '$python': install Python >= 3.10 (sudo apt install python3)"
	"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
		die "edged needs Python >= 3.10; $python is $("$python" -c 'import platform; print(platform.python_version())')"
	"$python" -c 'import venv, ensurepip' 2>/dev/null ||
		die "$python cannot create virtual environments: sudo apt install python3-venv"
	check_reachable_by_service "the interpreter" "$(command -v "$python")"
	case $(uname -m) in
	armv6l | armv7l)
		warn "onnxruntime publishes no wheels for 32-bit ARM: on a Raspberry Pi, install the 64-bit Raspberry Pi OS" ;;
	esac
}

install_python_env() {
	if [[ -n $python_env ]]; then
		step "Python environment: $python_env (given; left as it is)"
		if [[ -d $VENV ]]; then
			rm -rf -- "$VENV"
			note "removed $VENV, left by an earlier install: the service now runs $python_env/bin/edged"
		fi
		return
	fi
	step "Python environment: $VENV"
	if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
		note "reusing the existing venv"
	else
		rm -rf -- "$VENV"
		"$python" -m venv "$VENV"
	fi
	local packages=() requirement="edged"
	[[ -z $extras ]] || requirement="edged[$extras]"
	# pymavlink opens serial ports through pyserial, which it does not depend on.
	[[ ,$extras, != *,mavlink,* ]] || packages+=(pyserial)
	if [[ -n $wheelhouse ]]; then
		[[ -d $wheelhouse ]] || die "--wheelhouse $wheelhouse is not a directory"
		note "installing $requirement ${packages[*]} from $wheelhouse (offline)"
		"$VENV/bin/python" -m pip install --no-index --find-links "$wheelhouse" --upgrade "$requirement" "${packages[@]}"
	else
		# Build from a copy, so that pip's in-tree build leaves no root-owned build/ in the checkout.
		local tree="$workdir/edged-source"
		mkdir -p "$tree"
		cp -- "$SOURCE_TREE"/{pyproject.toml,setup.py,README.md,LICENSE,NOTICE} "$tree/"
		# model_zoo/ also ships inside the package, as edged._zoo (setup.py)
		(cd "$SOURCE_TREE" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - edged model_zoo) | tar -C "$tree" -xf -
		note "installing ${requirement/edged/$SOURCE_TREE} ${packages[*]}"
		"$VENV/bin/python" -m pip install --upgrade "${requirement/edged/$tree}" "${packages[@]}"
	fi
}

install_zoo() {
	step "Model zoo: $ZOO_DIR"
	if [[ -f $SOURCE_TREE/model_zoo/zoo.yaml ]]; then
		rm -rf -- "$ZOO_DIR.new"
		cp -RL -- "$SOURCE_TREE/model_zoo" "$ZOO_DIR.new"
		rm -rf -- "$ZOO_DIR"
		mv -- "$ZOO_DIR.new" "$ZOO_DIR"
		note "copied $SOURCE_TREE/model_zoo"
	elif [[ -d $ZOO_DIR ]]; then
		note "this tree has no model_zoo/zoo.yaml; keeping the zoo already installed in $ZOO_DIR"
	else
		note "this tree has no model_zoo/zoo.yaml yet (edged's own family is built with 'make zoo'), so no zoo"
		note "was installed: edged will not start until zoo.path in $CONFIG names a zoo."
		note "Copy one to $ZOO_DIR, or point zoo.path at another (deploy/zoos/ describes the reference models)."
	fi
}

install_config() {
	step "Config: $ETC_DIR"
	mkdir -p "$ETC_DIR"
	set_owner 0750 "$SERVICE_USER" "$ETC_DIR"
	if [[ -n $config_template ]]; then
		install_user_file "$TEMPLATE_DIR/$config_template.yaml" "$CONFIG" 0640 "$SERVICE_USER"
	else
		note "keeping $CONFIG (--config-template NAME installs a template)"
	fi
	install_user_file "$TEMPLATE_DIR/edged.env" "$ENV_FILE" 0600 root
}

template_names() {
	local path names=()
	for path in "$TEMPLATE_DIR"/*.yaml; do
		path=${path##*/}
		names+=("${path%.yaml}")
	done
	echo "${names[*]}"
}

edged_program() { if [[ -n $python_env ]]; then echo "$python_env/bin/edged"; else echo "$VENV/bin/edged"; fi; }

do_check() {
	[[ -f $UNIT ]] || die "edged is not installed in $prefix (no $UNIT)"
	if ((real_install)); then [[ $EUID -eq 0 ]] || die "the check reads root-only files: sudo $0 --check"; fi
	# the edged the installed unit runs
	python_env=$(sed -n 's|^ExecStart=\(.*\)/bin/edged run .*|\1|p' "$UNIT")
	[[ -n $python_env ]] || die "cannot tell from $UNIT which edged it runs"
	check_config
}

install_unit() {
	step "systemd unit: $UNIT"
	mkdir -p "$(dirname "$UNIT")"
	render_paths "$UNIT_TEMPLATE" |
		sed -e "s|^ExecStart=$root/opt/edged/venv/bin/edged |ExecStart=$(edged_program) |" >"$workdir/edged.service"
	grep -q "^ExecStart=$(edged_program) run " "$workdir/edged.service" ||
		die "could not point ExecStart at $(edged_program): has $UNIT_TEMPLATE changed?"
	if [[ -f $UNIT ]] && cmp -s "$workdir/edged.service" "$UNIT"; then
		note "up to date (ExecStart=$(edged_program) run --config $CONFIG)"
	else
		cp -- "$workdir/edged.service" "$UNIT"
		chmod 0644 "$UNIT"
		note "installed (ExecStart=$(edged_program) run --config $CONFIG)"
	fi
	if [[ -f $SOURCE_TREE/README.md ]]; then # the unit's Documentation=
		cp -- "$SOURCE_TREE/README.md" "$OPT_DIR/README.md"
	fi
}

install_completion() {
	step "bash completion: $BASH_COMPLETION"
	if ! "$(edged_program)" completion bash >"$workdir/completion"; then
		warn "$(edged_program) has no 'completion' command (an older edged?): no tab completion installed"
		return 0
	fi
	mkdir -p "$(dirname "$BASH_COMPLETION")"
	cp -- "$workdir/completion" "$BASH_COMPLETION"
	chmod 0644 "$BASH_COMPLETION"
	note "installed (new shells complete edged's commands; zsh: edged completion zsh, see edged completion --help)"
}

ensure_users_and_groups() {
	step "User and groups"
	local group
	for group in "${SUPPLEMENTARY_GROUPS[@]}"; do
		if getent group "$group" >/dev/null; then
			note "group $group exists"
		else
			groupadd --system "$group"
			note "created the system group $group (the unit's SupplementaryGroups= needs it; nothing here uses it yet)"
		fi
	done
	if ! getent group "$SERVICE_USER" >/dev/null; then
		groupadd --system "$SERVICE_USER"
		note "created the system group $SERVICE_USER"
	fi
	if getent passwd "$SERVICE_USER" >/dev/null; then
		note "user $SERVICE_USER exists"
	else
		useradd --system --gid "$SERVICE_USER" --home-dir /var/lib/edged --no-create-home \
			--shell /usr/sbin/nologin --comment "edged inference daemon" "$SERVICE_USER"
		note "created the system user $SERVICE_USER (home /var/lib/edged, the service's StateDirectory)"
	fi
}

print_real_install_steps() {
	step "Not a real install (prefix $prefix): users, groups and systemd left alone. A real install would run:"
	local group
	for group in "${SUPPLEMENTARY_GROUPS[@]}" "$SERVICE_USER"; do
		note "getent group $group || groupadd --system $group"
	done
	note "getent passwd $SERVICE_USER || useradd --system --gid $SERVICE_USER --home-dir /var/lib/edged --no-create-home --shell /usr/sbin/nologin $SERVICE_USER"
	note "chown root:$SERVICE_USER /etc/edged /etc/edged/edged.yaml; chown root:root /etc/edged/edged.env"
	note "systemctl daemon-reload"
	note "systemctl enable edged"
	if ((start_service)); then note "systemctl restart edged"; fi
}

# `edged config check` with the variables the service will get from edged.env, as the service's user when real.
check_config() {
	step "Config check: $CONFIG"
	if [[ ! -f $CONFIG ]]; then
		warn "no $CONFIG: install one with --config-template NAME"
		return 1
	fi
	local env_vars=() line value
	if [[ -r $ENV_FILE ]]; then
		while IFS= read -r line || [[ -n $line ]]; do
			[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
			if [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
				value=${BASH_REMATCH[2]}
				if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
				env_vars+=("${line%%=*}=$value")
			fi
		done <"$ENV_FILE"
	fi
	local as_user=()
	if ((real_install)); then as_user=(runuser -u "$SERVICE_USER" --); fi
	# exported in a subshell, not passed as arguments: the process list would show a password
	if (
		for line in "${env_vars[@]}"; do export "${line?}"; done
		"${as_user[@]}" "$(edged_program)" config check "$CONFIG"
	); then
		return 0
	fi
	local again="$0 --check"
	((real_install)) || again+=" --prefix $prefix"
	warn "the config needs attention before edged can start: edit $CONFIG (and $ENV_FILE for secrets),"
	warn "then check it again: $again"
	return 1
}

do_install() {
	if [[ -n $config_template && ! -f $TEMPLATE_DIR/$config_template.yaml ]]; then
		die "no template '$config_template'; there are: $(template_names)"
	fi
	if [[ -z $config_template && ! -f $CONFIG ]]; then
		die "no config at $CONFIG yet: choose a template with --config-template NAME ($(template_names))"
	fi
	if ((extras_given == 0)); then
		extras=tflite
		# a MAVLink power source in the template or in the config already installed needs pymavlink
		local config_file
		for config_file in ${config_template:+"$TEMPLATE_DIR/$config_template.yaml"} "$CONFIG"; do
			if [[ -f $config_file ]] && grep -Eq '^[^#]*type:[[:space:]]*mavlink' "$config_file"; then
				extras=tflite,mavlink
			fi
		done
	fi
	if ((real_install)); then
		[[ $EUID -eq 0 ]] || die "installing into / needs root: sudo $0 ${ORIGINAL_ARGS[*]}"
		command -v systemctl >/dev/null || die "no systemctl: edged's service needs systemd (--prefix DIR installs the files only)"
	fi
	if [[ -n $python_env ]]; then check_python_env; else check_python; fi

	step "Installing edged from $SOURCE_TREE into ${prefix}"
	if ((real_install)); then ensure_users_and_groups; fi
	mkdir -p "$OPT_DIR"
	install_python_env
	install_zoo
	install_config
	install_unit
	install_completion

	local config_ok=1
	check_config || config_ok=0
	if ((real_install)); then
		step "systemd"
		systemctl daemon-reload
		systemctl enable edged.service
		if ((start_service)); then
			((config_ok)) || die "not starting edged: the config check failed (see above)"
			systemctl restart edged.service
			note "started: systemctl status edged; journalctl -u edged -f"
		elif systemctl is-active --quiet edged.service; then
			note "edged is running the previous install: sudo systemctl restart edged"
		else
			note "enabled; start it with: sudo systemctl start edged"
		fi
	else
		print_real_install_steps
	fi
	step "Done"
}

# --- uninstalling -----------------------------------------------------------------------------------------------

remove_user_file() { # PATH
	local path=$1 name recorded
	name=$(basename "$path")
	rm -f -- "$path.dist"
	[[ -e $path ]] || {
		forget_sha256 "$name"
		return 0
	}
	recorded=$(recorded_sha256 "$name")
	if [[ -n $recorded && $(sha256_of "$path") == "$recorded" ]]; then
		rm -f -- "$path"
		forget_sha256 "$name"
		note "removed $path (unedited)"
	else
		note "kept $path: you edited it (--purge removes it)"
	fi
}

files_left_in() { # DIR: its files, the installer's record aside
	local path names=()
	for path in "$1"/* "$1"/.[!.]*; do
		if [[ -e $path && ${path##*/} != .pristine.sha256 ]]; then names+=("${path##*/}"); fi
	done
	echo "${names[*]}"
}

do_uninstall() {
	if ((real_install)); then
		[[ $EUID -eq 0 ]] || die "uninstalling from / needs root: sudo $0 --uninstall"
	fi
	step "Uninstalling edged from $prefix"
	if ((real_install)) && command -v systemctl >/dev/null; then
		if systemctl cat edged.service >/dev/null 2>&1; then
			systemctl disable --now edged.service
			note "stopped and disabled edged"
		fi
	elif ((!real_install)); then
		note "not a real install: a real uninstall would run: systemctl disable --now edged; systemctl daemon-reload"
	fi
	if [[ -e $UNIT ]]; then
		rm -f -- "$UNIT"
		note "removed $UNIT"
	fi
	if ((real_install)) && command -v systemctl >/dev/null; then
		systemctl daemon-reload
		systemctl reset-failed edged.service 2>/dev/null || true
	fi
	if [[ -e $OPT_DIR ]]; then
		rm -rf -- "$OPT_DIR"
		note "removed $OPT_DIR (the venv, the model zoo)"
	fi
	if [[ -e $BASH_COMPLETION ]]; then
		rm -f -- "$BASH_COMPLETION"
		note "removed $BASH_COMPLETION"
	fi

	if ((purge)); then
		if [[ -e $ETC_DIR ]]; then
			rm -rf -- "$ETC_DIR"
			note "purged $ETC_DIR, edited files included"
		fi
		if [[ -e $STATE_DIR ]]; then
			rm -rf -- "$STATE_DIR"
			note "purged $STATE_DIR (the outbox and the frame counter)"
		fi
		if ((real_install)) && getent passwd "$SERVICE_USER" >/dev/null; then
			note "the system user $SERVICE_USER is kept (its id must not be reused by files it may own): userdel $SERVICE_USER"
		fi
	else
		if [[ -d $ETC_DIR ]]; then
			remove_user_file "$CONFIG"
			remove_user_file "$ENV_FILE"
			if rmdir -- "$ETC_DIR" 2>/dev/null; then
				note "removed $ETC_DIR"
			else
				note "kept $ETC_DIR, which still holds: $(files_left_in "$ETC_DIR")"
			fi
		fi
		if [[ -e $STATE_DIR ]]; then
			note "kept $STATE_DIR (the outbox: detections not yet delivered; --purge removes it)"
		fi
	fi
	step "Done"
}

if ((check_only)); then
	do_check
elif ((uninstall)); then
	do_uninstall
else
	do_install
fi
