# SPDX-License-Identifier: GPL-2.0
#
# Out-of-tree build of blksnap.ko. KDIR is a kernel build tree made by
# scripts/build-kernel.sh; scripts/build.sh finds it and calls this.

ifeq ($(KDIR),)
$(error KDIR is not set: run scripts/build.sh, or make KDIR=<kernel build dir>)
endif

RUSTC ?= /usr/bin/rustc
KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) \
	$(if $(BINDGEN),BINDGEN=$(BINDGEN)) $(if $(LLVM),LLVM=$(LLVM))

all:
	$(KMAKE) modules

clean:
	$(KMAKE) clean

.PHONY: all clean
