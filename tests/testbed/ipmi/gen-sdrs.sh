#!/bin/sh
# From the development kit (shared/testbeds/ipmi), kept in the project so its tests stand alone.
# Generate bmc1.sdrs (sdrcomp input) for the simulated BMC.
# analog(num name sensor_type entity inst unit m r_exp [thresholds...])
analog() {
  num=$1 name=$2 stype=$3 ent=$4 inst=$5 unit=$6 m=$7 rexp=$8; shift 8
  cat <<EOT
sdr type 1
	sensor_owner_id		0x20
	sensor_owner_lun	0
	channel_number		0
	sensor_number		$num
	entity_id		$ent
	entity_instance		$inst
	init_scanning		true
	init_sensor_type	true
	init_thresholds		true
	default_sensor_scan_on	true
	sensor_threshold_access	readable
	sensor_type		$stype
	event_reading_type_code	1
	analog_data_format	unsigned
	rate_unit		none
	modifier_unit		none
	percentage		false
	base_unit		$unit
	modifier_unit_code	unspecified
	linearization		linear
	m			$m
	tolerance		0
	b			0
	accuracy		1
	accuracy_exp		0
	sensor_direction	input
	r_exp			$rexp
	b_exp			0
	sensor_maximum		255
	sensor_minimum		0
EOT
  for t in "$@"; do k=${t%%=*}; k=${k%_fthresh}; echo "	${k}_fthresh		${t#*=}"; echo "	${k}_thrsh_readable	true"; echo "	return_${k}		true"; done
  echo "	id_string		\"$name\""
  echo "endsdr"
  echo
}
cat <<EOT
sdr type 18
	device_slave_address	0x20
	device_channel_number	0
	chassis			true
	ipmb_event_gen		false
	ipmb_event_recv		false
	fru_inventory		true
	sel			true
	sdr			true
	sensor			true
	entity_id		system_board
	entity_instance		1
	id_string		"Sim BMC"
endsdr

EOT
analog 1 "CPU1 Temp"   Temperature processor          1 degrees_C 1   0  unc_fthresh=85 uc_fthresh=95 unr_fthresh=105
analog 2 "Inlet Temp"  Temperature system_board       1 degrees_C 1   0  unc_fthresh=40 uc_fthresh=45
analog 3 "Fan1"        Fan         fan_cooling_device 1 RPM       100 0  lnc_fthresh=1500 lc_fthresh=1000
analog 4 "Fan2"        Fan         fan_cooling_device 2 RPM       100 0  lnc_fthresh=1500 lc_fthresh=1000
analog 5 "PSU1 Vout 12V" Voltage     power_supply       1 Volts     1   -1 lc_fthresh=11.0 uc_fthresh=13.0
analog 6 "PSU1 Current" Current    power_supply       1 Amps      1   -1 uc_fthresh=20.0
analog 7 "PSU1 Power"  Other_Units_Based_Sensor power_supply 1 Watts 4 0
# PSU status: discrete, sensor-specific (0x6f), type Power_Supply
cat <<EOT
sdr type 2
	sensor_owner_id		0x20
	sensor_owner_lun	0
	channel_number		0
	sensor_number		8
	entity_id		power_supply
	entity_instance		1
	init_scanning		true
	init_sensor_type	true
	default_sensor_scan_on	true
	sensor_type		Power_Supply
	event_reading_type_code	0x6f
	id_string		"PSU1 Status"
endsdr
EOT
analog 9 "Exhaust Temp" Temperature system_board 2 degrees_C 1 0 unc_fthresh=60 uc_fthresh=70
