@echo off
rem ===========================================================================
rem Points the logon scripts in NETLOGON at new-sbs.
rem
rem 1. Every script except SBS_LOGIN_SCRIPT.bat: each "\\old-sbs\" and
rem    "\\old-sbs." (also "\\old-sbs.acme.local\") becomes the same path on
rem    new-sbs (mapped drives, printers, tools). A bare "old-sbs" elsewhere (a
rem    comment, an echo) is left alone: only UNC paths matter to clients.
rem 2. SBS_LOGIN_SCRIPT.bat is the SBS client setup logon script. SBS 2000's
rem    runs "\\OLD-SBS\Clients\Setup\setup.exe /s OLD-SBS": the server name is
rem    also the argument of /s, not only part of a path. SBS 2003 Setup writes
rem    its own version (\\NEW-SBS\Clients\Setup\setup.exe /s NEW-SBS) when it
rem    finishes; if the file still names OLD-SBS (verify in rehearsal whether
rem    SBS 2003 Setup replaced it in an existing domain), both the path and the
rem    /s argument are pointed at NEW-SBS, the form SBS 2003 writes itself.
rem
rem File Replication Service copies the change to old-sbs. The original
rem scripts are saved once, before the first change, to
rem C:\mig\backup\netlogon: the step's rollback copies them back.
rem Safe to run again. Runs directly: new-sbs edits its own SYSVOL.
rem Needs PowerShell 2.0 (Windows Management Framework, installed on new-sbs
rem after SBS Setup).
rem ===========================================================================
setlocal
set SCRIPTS=C:\WINDOWS\SYSVOL\sysvol\acme.local\scripts
set BACKUP=C:\mig\backup\netlogon
if not exist "%SCRIPTS%\" (
    echo %SCRIPTS% not found: is new-sbs a domain controller with SYSVOL shared? 1>&2
    exit /b 1
)
if not exist "%BACKUP%\" (
    mkdir "%BACKUP%"
    xcopy "%SCRIPTS%\*" "%BACKUP%\" /e /k /h /y
    if errorlevel 1 exit /b 1
)
rem Files are read and written in the ANSI code page, as cmd and kix expect.
powershell -NoProfile -NonInteractive -Command "$enc = [Text.Encoding]::Default; Get-ChildItem -Path 'C:\WINDOWS\SYSVOL\sysvol\acme.local\scripts' -Recurse -Include *.bat,*.cmd,*.vbs,*.kix | Where-Object { -not $_.PSIsContainer } | ForEach-Object { $old = [IO.File]::ReadAllText($_.FullName, $enc); $new = $old -replace '(?i)\\\\old-sbs(?=[\\.])', '\\NEW-SBS'; if ($_.Name -ieq 'SBS_LOGIN_SCRIPT.bat') { $new = $new -replace '(?i)(/s\s+)old-sbs\b', '${1}NEW-SBS' }; if ($new -ne $old) { [IO.File]::WriteAllText($_.FullName, $new, $enc); Write-Output ('updated ' + $_.FullName) } }"
if errorlevel 1 exit /b 1
echo Lines that still mention old-sbs (only UNC paths and the /s argument must be gone):
findstr /s /i /n "old-sbs" "%SCRIPTS%\*"
exit /b 0
