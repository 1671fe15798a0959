################################################################################
#
# ggcore
#
################################################################################

# The source is the ggcore tree this BR2_EXTERNAL tree lives in.
GGCORE_VERSION = local
GGCORE_SITE = $(BR2_EXTERNAL_GGCORE_PATH)/..
GGCORE_SITE_METHOD = local
# Not the host's build outputs, kernel trees or test caches.
GGCORE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = --exclude /build --exclude /buildroot --exclude node_modules
GGCORE_LICENSE = Apache-2.0
GGCORE_LICENSE_FILES = LICENSE
GGCORE_GOMOD = github.com/ggcore/ggcore
GGCORE_BUILD_TARGETS = core/cmd/ggcore initramfs/cmd/gginit
GGCORE_LDFLAGS = -s -w -buildid=
GGCORE_FLAVOR = $(call qstrip,$(BR2_PACKAGE_GGCORE_FLAVOR))

# A local tree has no vendor/ directory: the modules of go.mod come
# through the module proxy, checked against go.sum.
GGCORE_GO_ENV = \
	GOFLAGS=-mod=mod \
	GOPROXY=$(call qstrip,$(BR2_PACKAGE_GGCORE_GOPROXY))

ifeq ($(BR2_PACKAGE_GGCORE_FLAVOR_PKCS11),y)
GGCORE_GO_ENV += CGO_ENABLED=1
else
# tpm and debug: a static ggcore without cgo.
GGCORE_GO_ENV += CGO_ENABLED=0
endif

# The image's clock floor: the ggcore commit's time, as
# initramfs/build.sh sets it.
GGCORE_BUILD_TIME := $(shell git -C $(BR2_EXTERNAL_GGCORE_PATH) log -1 --format=%ct 2>/dev/null || echo 0)
GGCORE_LDFLAGS += -X main.buildTime=$(GGCORE_BUILD_TIME)

define GGCORE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/bin/ggcore $(TARGET_DIR)/bin/ggcore
	$(INSTALL) -D -m 0755 $(@D)/bin/gginit $(TARGET_DIR)/init
	mkdir -p $(TARGET_DIR)/greengrass $(TARGET_DIR)/etc/gginit
	echo $(GGCORE_BUILD_TIME) > $(TARGET_DIR)/etc/gginit/build-time
endef

$(eval $(golang-package))
