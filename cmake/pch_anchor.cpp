// Anchor translation unit: fundus_pch exists only to build the shared precompiled header.
