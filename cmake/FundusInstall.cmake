# Install + export so another CMake project can: find_package(FundusRetrieval) and link fundus::fundus.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(_fundus_export_targets ${FUNDUS_COMPONENTS} fundus)
if(TARGET fundus_pch)
  list(APPEND _fundus_export_targets fundus_pch)
endif()
install(TARGETS ${_fundus_export_targets} fundus_hnswlib EXPORT FundusTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS fundus_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/fundus DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT FundusTargets NAMESPACE fundus:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/FundusRetrieval)
configure_package_config_file(cmake/FundusRetrievalConfig.cmake.in
  ${PROJECT_BINARY_DIR}/FundusRetrievalConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/FundusRetrieval)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/FundusRetrievalConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/FundusRetrievalConfig.cmake
              ${PROJECT_BINARY_DIR}/FundusRetrievalConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/FundusRetrieval)
