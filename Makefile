# Set-up and entry points. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install system-deps extra-voices mbrola-voices asterisk-voices test test-fast demo models bench bench-deps clean

# The venv sees system site-packages so that an existing torch stands; torch is pinned to the
# CPU wheel 2.13.0 only when none is importable (a bare `torch` would pull a CUDA build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip install --no-deps 'resemblyzer==0.1.4'
	touch $@

install: $(VENV)/.installed

# Debian packages behind `soundstorm corpus synth` (voices, sentence sources), the opus
# baseline, and the headless browser of the web page's test. Installed only when missing;
# `apt-get update` runs only if an install fails (a fresh image's package lists may be stale).
# Machines without apt-get get a warning: the tests that need these programs skip there.
SYSTEM_DEPS := flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng \
	sox fortunes fortunes-min bible-kjv wordnet-base opus-tools chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

# $(call apt_missing,PACKAGES): install those of PACKAGES that are missing.
define apt_missing
	@if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then \
		echo "$@: no apt-get here; install by hand: $(1)" >&2; exit 0; fi; \
	missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "$@: installing" $$missing; \
		$(APT_INSTALL) $$missing || { $(SUDO) apt-get update && $(APT_INSTALL) $$missing; }; \
	fi
endef

system-deps:
	$(call apt_missing,$(SYSTEM_DEPS))

# Festival voices of other languages reading English: more voices for SoundStorm's training
# (recipes/demo/build.sh, docs/voices.md). Only `make models` needs them.
EXTRA_VOICE_DEPS := festvox-ca-ona-hts festvox-czech-dita festvox-czech-krb festvox-czech-machac \
	festvox-suopuhe-lj festvox-suopuhe-mv festvox-italp16k festvox-itapc16k festvox-ru

extra-voices:
	$(call apt_missing,$(EXTRA_VOICE_DEPS))

# MBROLA diphone voices (each a real speaker's diphones) driven by espeak-ng: four English ones,
# sixteen of other languages speaking English through espeak-ng's `mb-XX-en` tables, and 37 more
# that read it by their own languages' rules: more voices for the decoder of SoundStorm's output
# (its last stage in recipes/demo/build.sh; docs/voices.md). mbrola is in Debian's contrib and its
# voices in non-free (each voice's terms: /usr/share/doc/mbrola-*/copyright), so this target adds
# those components to apt's sources in a file of its own. Only `make models` needs them.
MBROLA_VOICES := us1 us2 us3 en1 af1 nl2 fr1 fr4 de1 de2 de3 de4 de5 de6 gr2 hu1 pl1 ro1 sw1 sw2 \
	br1 br2 br3 br4 cr1 cz2 nl3 ee1 ca1 ca2 fr2 fr3 fr5 fr6 fr7 de7 de8 gr1 ic1 id1 it1 it2 it3 it4 \
	la1 lt1 lt2 mx1 mx2 ir1 pt1 es1 es2 es3 es4 tr1 tr2
MBROLA_SOURCES := /etc/apt/sources.list.d/soundstorm-contrib-non-free.sources

mbrola-voices:
	@if command -v apt-get >/dev/null 2>&1 && ! apt-cache show mbrola-us1 >/dev/null 2>&1; then \
		. /etc/os-release; \
		printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$$VERSION_CODENAME" | $(SUDO) tee $(MBROLA_SOURCES) >/dev/null; \
		$(SUDO) apt-get update; \
	fi
	$(call apt_missing,espeak-ng mbrola $(addprefix mbrola-,$(MBROLA_VOICES)))

# Four people's recorded Asterisk prompts (G.722, 2 h of real speech) for recipes/demo/asterisk_voices.py.
# Tried for the bundle's SoundStorm and codec and not kept (docs/voices.md, docs/codec.md): no
# other target needs them.
ASTERISK_DEPS := asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722 \
	asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722

asterisk-voices: install
	$(call apt_missing,$(ASTERISK_DEPS))

test: install system-deps
	$(PY) -m pytest -q

test-fast: install system-deps
	$(PY) -m pytest -q -m "not slow"

demo: install system-deps
	$(VENV)/bin/soundstorm demo

# The bundled models (models/demo) from nothing: hours of CPU training, resumable (MINUTES=50 to
# stop each training step early; run it again to continue).
models: install system-deps extra-voices mbrola-voices
	recipes/demo/build.sh

# soundstorm-pytorch, for the side-by-side decoding benchmark only; --no-deps keeps torch as is.
bench-deps: install
	$(PY) -m pip install --no-deps -r benchmarks/requirements-peers.txt

bench: bench-deps
	$(PY) benchmarks/decode_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
