# Compiles the OTLP trace v1 definitions (and the google.rpc error model subset) with
# protoc + grpc_cpp_plugin at build time into the static library edgetrace_otlp_proto.
# Consumers include generated headers as "opentelemetry/proto/.../x.pb.h".
find_program(EDGETRACE_PROTOC protoc REQUIRED)
find_program(EDGETRACE_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

set(_otlp_proto_root ${CMAKE_CURRENT_SOURCE_DIR})
set(_otlp_out ${CMAKE_CURRENT_BINARY_DIR}/otlp_gen)
file(MAKE_DIRECTORY ${_otlp_out})

set(_otlp_messages
  opentelemetry/proto/common/v1/common.proto
  opentelemetry/proto/resource/v1/resource.proto
  opentelemetry/proto/trace/v1/trace.proto
  opentelemetry/proto/collector/trace/v1/trace_service.proto
  google/rpc/status.proto)
set(_otlp_services opentelemetry/proto/collector/trace/v1/trace_service.proto)

set(_otlp_sources)
foreach(proto IN LISTS _otlp_messages)
  string(REGEX REPLACE "\\.proto$" "" stem ${proto})
  set(outputs ${_otlp_out}/${stem}.pb.cc ${_otlp_out}/${stem}.pb.h)
  set(args --cpp_out=${_otlp_out})
  if(proto IN_LIST _otlp_services)
    list(APPEND outputs ${_otlp_out}/${stem}.grpc.pb.cc ${_otlp_out}/${stem}.grpc.pb.h)
    list(APPEND args --grpc_out=${_otlp_out} --plugin=protoc-gen-grpc=${EDGETRACE_GRPC_CPP_PLUGIN})
  endif()
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND ${EDGETRACE_PROTOC} -I ${_otlp_proto_root} -I ${Protobuf_INCLUDE_DIRS} ${args} ${_otlp_proto_root}/${proto}
    DEPENDS ${_otlp_proto_root}/${proto} ${EDGETRACE_PROTOC}
    COMMENT "protoc ${proto}"
    VERBATIM)
  foreach(o IN LISTS outputs)
    if(o MATCHES "\\.cc$")
      list(APPEND _otlp_sources ${o})
    endif()
  endforeach()
endforeach()

add_library(edgetrace_otlp_proto STATIC ${_otlp_sources})
target_include_directories(edgetrace_otlp_proto SYSTEM PUBLIC ${_otlp_out})
target_link_libraries(edgetrace_otlp_proto PUBLIC protobuf::libprotobuf PkgConfig::GRPCPP)
# Generated code is not ours to keep warning-clean.
target_compile_options(edgetrace_otlp_proto PRIVATE -w)
set_target_properties(edgetrace_otlp_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
