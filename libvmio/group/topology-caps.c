/* placeholder: being written */
typedef int vmio_placeholder_topology_caps;
