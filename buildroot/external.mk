include $(sort $(wildcard $(BR2_EXTERNAL_GGCORE_PATH)/package/*/*.mk))
